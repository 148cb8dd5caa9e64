package cloudinit

import (
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// leaf is one key of the Config type that holds a value.
type leaf struct {
	path keyPath
	typ  reflect.Type
}

// leaves lists every key of t, with "k" for map keys. Lists of structs
// (write_files, routes) and the special forms have their own tests.
func leaves(t reflect.Type, p keyPath) []leaf {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == commandType || t == mountType:
		return nil
	case t.Kind() == reflect.Struct:
		var out []leaf
		for i := 0; i < t.NumField(); i++ {
			if name := yamlName(t.Field(i)); name != "" {
				out = append(out, leaves(t.Field(i).Type, p.add(name))...)
			}
		}
		return out
	case t.Kind() == reflect.Map && t.Elem().Kind() != reflect.String && t.Elem().Kind() != reflect.Bool:
		return leaves(t.Elem(), p.add("k"))
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return nil
	}
	return []leaf{{p, t}}
}

func goodValue(t reflect.Type) *yaml.Node {
	switch t.Kind() {
	case reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "v"}
	case reflect.Int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "7"}
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}
	case reflect.Slice:
		return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{goodValue(t.Elem())}}
	case reflect.Map:
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "k"}, goodValue(t.Elem())}}
	}
	return nil
}

// TestEveryKeyTypes decodes a value of the right type and one of the
// wrong type into every key of the Config: the first lands in the Config,
// the second is an error at that key's path.
func TestEveryKeyTypes(t *testing.T) {
	all := leaves(reflect.TypeOf(Config{}), nil)
	if len(all) < 150 {
		t.Fatalf("found %d keys, want the whole schema", len(all))
	}
	for _, l := range all {
		t.Run(l.path.String(), func(t *testing.T) {
			good := goodValue(l.typ)
			if good == nil {
				t.Fatalf("no test value for %s", l.typ)
			}
			tree := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			setPath(tree, l.path, good, 1, 1)
			rep := &Report{}
			cfg := &Config{}
			(&decoder{source: "t", rep: rep}).decode(tree, reflect.ValueOf(cfg).Elem(), nil)
			// A key Berth reads but does not act on says so, once.
			want := 0
			if inert(l.path.String(), good) != "" {
				want = 1
			}
			if len(rep.Entries) != want || (want == 1 && rep.Entries[0].Error) {
				t.Errorf("decoding %s: %s", l.path, rep)
			}
			out, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var back yaml.Node
			if err := yaml.Unmarshal(out, &back); err != nil {
				t.Fatal(err)
			}
			if n, _, _ := lookup(back.Content[0], l.path); n == nil {
				t.Errorf("%s did not land in the Config:\n%s", l.path, out)
			}

			bad := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: "x"}, {Kind: yaml.ScalarNode, Tag: "!!int", Value: "1"}}}
			switch {
			case l.typ.Kind() == reflect.Map:
				bad = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "scalar"}
			case l.path[len(l.path)-1] == "environment":
				// A mapping is a valid environment; a list of mappings is not.
				bad = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{bad}}
			}
			tree = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			setPath(tree, l.path, bad, 1, 1)
			rep = &Report{}
			(&decoder{source: "t", rep: rep}).decode(tree, reflect.ValueOf(&Config{}).Elem(), nil)
			if !rep.HasErrors() || !strings.HasPrefix(rep.Entries[0].Path, l.path.String()) || !strings.HasPrefix(rep.Entries[0].Message, "want ") {
				t.Errorf("decoding a wrong type into %s: report %q, want a `want ...` error at that path", l.path, rep)
			}
		})
	}
}
