package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds a document after alias expansion, so that a small
// "billion laughs" input cannot exhaust memory.
const maxNodes = 200000

// ErrSyntax marks a source that is not a YAML mapping at all.
var ErrSyntax = errors.New("cloud-config syntax")

// Parse decodes one cloud-config source. The error is only for input that
// is not a YAML mapping (it names source:line:col); wrong types, impossible
// values and unknown keys are in the Report, and bad keys are left out of
// the Config.
func Parse(source string, data []byte) (*Config, *Report, error) {
	root, err := parseTree(source, data)
	if err != nil {
		return nil, nil, err
	}
	cfg, rep := check(source, root)
	return cfg, rep, nil
}

// parseTree parses data into a plain mapping node (aliases and merge keys
// expanded). An empty document gives an empty mapping.
func parseTree(source string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
		}
		return nil, fmt.Errorf("%s%s (%w)", source, yamlErrText(err), ErrSyntax)
	}
	var n *yaml.Node = &doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
		}
		n = n.Content[0]
	}
	budget := maxNodes
	out, err := expand(n, &budget, 0)
	if err != nil {
		return nil, fmt.Errorf("%s:%d:%d: %w: %v", source, n.Line, n.Column, ErrSyntax, err)
	}
	if isNull(out) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: out.Line, Column: out.Column}, nil
	}
	if out.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d:%d: %w: the top level must be a mapping, got %s", source, out.Line, out.Column, ErrSyntax, describe(out))
	}
	return out, nil
}

// yamlErrText turns "yaml: line 3: did not find ..." into ":3: did not
// find ..." (the parser gives no column for syntax errors).
func yamlErrText(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	if t, ok := strings.CutPrefix(s, "line "); ok {
		return ":" + t
	}
	return ": " + s
}

// expand copies n with aliases resolved and `<<` merge keys applied.
func expand(n *yaml.Node, budget *int, depth int) (*yaml.Node, error) {
	*budget--
	if *budget < 0 {
		return nil, errors.New("document too large after expanding aliases")
	}
	if depth > 200 {
		return nil, errors.New("document nested too deeply")
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, errors.New("unknown alias")
		}
		c, err := expand(n.Alias, budget, depth+1)
		if err != nil {
			return nil, err
		}
		return c, nil
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}, nil
		}
		return expand(n.Content[0], budget, depth+1)
	case yaml.ScalarNode:
		c := *n
		c.Anchor, c.Alias = "", nil
		if c.Tag == "" {
			c.Tag = "!!str"
		}
		return &c, nil
	}
	c := *n
	c.Anchor, c.Alias = "", nil
	c.Content = make([]*yaml.Node, 0, len(n.Content))
	if n.Kind == yaml.SequenceNode {
		for _, item := range n.Content {
			e, err := expand(item, budget, depth+1)
			if err != nil {
				return nil, err
			}
			c.Content = append(c.Content, e)
		}
		return &c, nil
	}
	// Mapping: merged-in keys first, so the mapping's own keys win.
	var own []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			ve, err := expand(v, budget, depth+1)
			if err != nil {
				return nil, err
			}
			var maps []*yaml.Node
			switch ve.Kind {
			case yaml.MappingNode:
				maps = []*yaml.Node{ve}
			case yaml.SequenceNode:
				maps = ve.Content
			}
			for _, m := range maps {
				if m.Kind == yaml.MappingNode {
					c.Content = append(c.Content, m.Content...)
				}
			}
			continue
		}
		ke, err := expand(k, budget, depth+1)
		if err != nil {
			return nil, err
		}
		ve, err := expand(v, budget, depth+1)
		if err != nil {
			return nil, err
		}
		own = append(own, ke, ve)
	}
	c.Content = append(c.Content, own...)
	return &c, nil
}

// check decodes a source's tree into a Config, reports every problem and
// removes the bad keys from the tree.
func check(source string, root *yaml.Node) (*Config, *Report) {
	rep := &Report{}
	cfg := &Config{}
	d := &decoder{source: source, rep: rep}
	d.decode(root, reflect.ValueOf(cfg).Elem(), nil)
	probs := cfg.validate()
	if len(probs) > 0 {
		for _, pr := range probs {
			n, _, _ := lookup(root, pr.path)
			if n == nil {
				n = root
			}
			rep.add(true, source, n, pr.path.String(), "%s", pr.msg)
		}
		for i := len(probs) - 1; i >= 0; i-- {
			remove(root, probs[i].path)
		}
		cfg = decodeQuiet(root)
	}
	rep.sort()
	return cfg, rep
}

// decodeQuiet decodes a tree already checked.
func decodeQuiet(root *yaml.Node) *Config {
	cfg := &Config{}
	d := &decoder{}
	d.decode(root, reflect.ValueOf(cfg).Elem(), nil)
	return cfg
}
