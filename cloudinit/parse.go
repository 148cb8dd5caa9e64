package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds a document after alias expansion, so that a small
// "billion laughs" input cannot exhaust memory.
const maxNodes = 50000

// ErrSyntax marks a source that is not a YAML mapping at all.
var ErrSyntax = errors.New("cloud-config syntax")

// SyntaxError is a source that is not a YAML mapping: where and why. It
// matches ErrSyntax with errors.Is.
type SyntaxError struct {
	Source       string
	Line, Column int // 0 when unknown
	Message      string
}

func (e *SyntaxError) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// syntaxError converts a yaml.v3 error ("yaml: line 3: did not find
// ...") of parsing data.
func syntaxError(source string, data []byte, err error) *SyntaxError {
	e := &SyntaxError{Source: source, Message: strings.TrimPrefix(err.Error(), "yaml: ")}
	if rest, ok := strings.CutPrefix(e.Message, "line "); ok {
		if num, msg, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				e.Line, e.Message = n, msg
			}
		}
	}
	for _, p := range unclosedHints {
		if !strings.HasPrefix(e.Message, p.msg) {
			continue
		}
		// yaml.v3 gives these parser errors the 0-based line of where the
		// list or map began (and, when that is the first line, the 0-based
		// line it gave up on): one less than the line to look at.
		if e.Line > 0 && e.Line < nonEmptyLines(data) {
			e.Line++
		}
		e.Message += " (" + p.hint + ")"
		break
	}
	return e
}

// unclosedHints are the parser errors whose line syntaxError corrects,
// and what each most often means.
var unclosedHints = []struct{ msg, hint string }{
	{"did not find expected ',' or ']'", "a [ list that begins here is not closed"},
	{"did not find expected ',' or '}'", "a { map that begins here is not closed"},
	{"did not find expected key", "the map that begins here has a key indented wrongly below"},
	{"did not find expected '-' indicator", "the list that begins here has an entry indented wrongly below"},
	{"found undefined tag handle", "a !tag here is not one YAML knows"},
}

// nonEmptyLines is the number of the last line of data with anything on it.
func nonEmptyLines(data []byte) int {
	return len(bytes.Split(bytes.TrimRight(data, " \t\r\n"), []byte("\n")))
}

// Parse decodes one cloud-config source. The error is only for input that
// is not a YAML mapping (it names source:line:col); wrong types, impossible
// values and unknown keys are in the Report, and bad keys are left out of
// the Config.
func Parse(source string, data []byte) (*Config, *Report, error) {
	root, dups, err := parseTree(source, data)
	if err != nil {
		return nil, nil, err
	}
	cfg, rep := check(source, root)
	rep.Entries = append(dups, rep.Entries...)
	rep.sort()
	return cfg, rep, nil
}

// ParseTree is Parse giving the checked document instead of the Config:
// aliases expanded, bad keys left out, unknown keys kept. It is what
// `ros config merge` merges.
func ParseTree(source string, data []byte) (*yaml.Node, *Report, error) {
	root, dups, err := parseTree(source, data)
	if err != nil {
		return nil, nil, err
	}
	_, rep := check(source, root)
	rep.Entries = append(dups, rep.Entries...)
	rep.sort()
	return root, rep, nil
}

// parseTree parses data into a plain mapping node (aliases and merge keys
// expanded, of repeated keys only the last kept). An empty document gives
// an empty mapping. The entries are warnings about repeated keys.
func parseTree(source string, data []byte) (*yaml.Node, []Entry, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil, nil
		}
		return nil, nil, syntaxError(source, data, err)
	}
	var n *yaml.Node = &doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil, nil
		}
		n = n.Content[0]
	}
	x := &expander{budget: maxNodes, source: source}
	var out *yaml.Node
	var err error
	if plain(n, 0) {
		// No aliases or merge keys: the parser's tree is ours to use as it is.
		out = x.normalize(n)
	} else {
		out, err = x.expand(n, 0)
	}
	if err != nil {
		return nil, nil, &SyntaxError{Source: source, Line: n.Line, Column: n.Column, Message: err.Error()}
	}
	if isNull(out) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: out.Line, Column: out.Column}, x.dups, nil
	}
	if out.Kind != yaml.MappingNode {
		return nil, nil, &SyntaxError{Source: source, Line: out.Line, Column: out.Column, Message: "the top level must be a mapping, got " + describe(out)}
	}
	return out, x.dups, nil
}

// plain reports whether n has no aliases, merge keys or deep nesting.
func plain(n *yaml.Node, depth int) bool {
	if depth > 200 || n.Kind == yaml.AliasNode || (n.Kind == yaml.ScalarNode && n.Tag == "!!merge") {
		return false
	}
	for _, c := range n.Content {
		if !plain(c, depth+1) {
			return false
		}
	}
	return true
}

// normalize does in place what expand does for a plain tree: anchors
// cleared, untagged scalars made strings, repeated keys dropped.
func (x *expander) normalize(n *yaml.Node) *yaml.Node {
	n.Anchor = ""
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "" {
			n.Tag = "!!str"
		}
	case yaml.MappingNode:
		n.Content = x.dedup(n.Content, 0)
	}
	for _, c := range n.Content {
		x.normalize(c)
	}
	return n
}

// expander copies a tree with aliases resolved and `<<` merge keys
// applied, within a node budget.
type expander struct {
	budget int
	source string
	dups   []Entry
}

// expand copies n with aliases resolved and `<<` merge keys applied.
func (x *expander) expand(n *yaml.Node, depth int) (*yaml.Node, error) {
	x.budget--
	if x.budget < 0 {
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
		c, err := x.expand(n.Alias, depth+1)
		if err != nil {
			return nil, err
		}
		return c, nil
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}, nil
		}
		return x.expand(n.Content[0], depth+1)
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
			e, err := x.expand(item, depth+1)
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
			ve, err := x.expand(v, depth+1)
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
		ke, err := x.expand(k, depth+1)
		if err != nil {
			return nil, err
		}
		ve, err := x.expand(v, depth+1)
		if err != nil {
			return nil, err
		}
		own = append(own, ke, ve)
	}
	merged := len(c.Content)
	c.Content = append(c.Content, own...)
	c.Content = x.dedup(c.Content, merged)
	return &c, nil
}

// dedup keeps the last of repeated keys in a mapping's content. A repeat
// among the first merged entries (from `<<`) is expected; others are warned of.
func (x *expander) dedup(content []*yaml.Node, merged int) []*yaml.Node {
	if len(content) <= 2 {
		return content
	}
	last := make(map[string]int, len(content)/2)
	for i := 0; i+1 < len(content); i += 2 {
		if k := content[i]; k.Kind == yaml.ScalarNode {
			last[k.Value] = i
		}
	}
	if len(last) == len(content)/2 {
		return content
	}
	out := content[:0:0]
	for i := 0; i+1 < len(content); i += 2 {
		k := content[i]
		if j, ok := last[k.Value]; ok && k.Kind == yaml.ScalarNode && j != i {
			if i >= merged {
				x.dups = append(x.dups, Entry{Source: x.source, Line: k.Line, Column: k.Column, Message: fmt.Sprintf("key %q repeated; the later one wins", k.Value)})
			}
			continue
		}
		out = append(out, content[i], content[i+1])
	}
	return out
}

// check decodes a source's tree into a Config, reports every problem and
// removes the bad keys from the tree.
func check(source string, root *yaml.Node) (*Config, *Report) {
	rep := &Report{}
	cfg := &Config{}
	d := &decoder{source: source, rep: rep}
	d.decode(root, reflect.ValueOf(cfg).Elem(), nil)
	// Dropping a bad key can make another invalid (a bond slave dropped
	// leaves its bond's options alone): validate again, a few rounds.
	for round := 0; round < 4; round++ {
		probs := cfg.validate()
		if len(probs) == 0 {
			break
		}
		// A problem's node, or when the value came from another form (a
		// KEY=VALUE list for a map) its nearest ancestor in the document.
		at := make([]keyPath, len(probs))
		for i, pr := range probs {
			p := pr.path
			if pr.drop != nil {
				p = pr.drop
			}
			n, _, _ := lookup(root, pr.path)
			if n == nil {
				n, _, _ = lookup(root, p)
			}
			for n == nil && len(p) > 0 {
				p = p[:len(p)-1]
				n, _, _ = lookup(root, p)
			}
			if n == nil {
				n = root
			}
			at[i] = p
			rep.add(true, source, n, pr.path.String(), "%s", pr.msg)
		}
		// Find every node first, then remove by identity, so that removing
		// one list item does not shift the index of another; each parent's
		// content is rebuilt once.
		drop := map[*yaml.Node]bool{}
		var parents []*yaml.Node
		seen := map[*yaml.Node]bool{}
		for _, p := range at {
			if n, parent, _ := lookup(root, p); n != nil && parent != nil {
				drop[n] = true
				if !seen[parent] {
					seen[parent] = true
					parents = append(parents, parent)
				}
			}
		}
		for _, parent := range parents {
			removeChildren(parent, drop)
		}
		cfg = decodeQuiet(root)
	}
	rep.sort()
	return cfg, rep
}

// removeChildren removes the nodes in drop (values, with their keys in a
// mapping) from parent.
func removeChildren(parent *yaml.Node, drop map[*yaml.Node]bool) {
	kept := parent.Content[:0:0]
	if parent.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if !drop[parent.Content[i+1]] {
				kept = append(kept, parent.Content[i], parent.Content[i+1])
			}
		}
	} else {
		for _, c := range parent.Content {
			if !drop[c] {
				kept = append(kept, c)
			}
		}
	}
	parent.Content = kept
}

// decodeQuiet decodes a tree already checked.
func decodeQuiet(root *yaml.Node) *Config {
	cfg := &Config{}
	d := &decoder{}
	d.decode(root, reflect.ValueOf(cfg).Elem(), nil)
	return cfg
}
