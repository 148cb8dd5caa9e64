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
const maxNodes = 200000

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

// syntaxError converts a yaml.v3 error ("yaml: line 3: did not find ...").
func syntaxError(source string, err error) *SyntaxError {
	e := &SyntaxError{Source: source, Message: strings.TrimPrefix(err.Error(), "yaml: ")}
	if rest, ok := strings.CutPrefix(e.Message, "line "); ok {
		if num, msg, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				e.Line, e.Message = n, msg
			}
		}
	}
	return e
}

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
		return nil, syntaxError(source, err)
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
		return nil, &SyntaxError{Source: source, Line: n.Line, Column: n.Column, Message: err.Error()}
	}
	if isNull(out) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: out.Line, Column: out.Column}, nil
	}
	if out.Kind != yaml.MappingNode {
		return nil, &SyntaxError{Source: source, Line: out.Line, Column: out.Column, Message: "the top level must be a mapping, got " + describe(out)}
	}
	return out, nil
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
