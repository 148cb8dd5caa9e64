package cloudinit

import (
	"go.yaml.in/yaml/v3"
)

// mergeTree merges src into dst (both mappings) and returns dst: mappings
// merge key by key, anything else in src replaces dst's value, a null in
// src leaves dst's value, and top-level ssh_authorized_keys is the union
// of both lists. src's nodes are shared, not copied.
func mergeTree(dst, src *yaml.Node) *yaml.Node {
	return mergeNode(dst, src, 0)
}

func mergeNode(dst, src *yaml.Node, depth int) *yaml.Node {
	if isNull(src) {
		return dst
	}
	if dst == nil || dst.Kind != yaml.MappingNode || src.Kind != yaml.MappingNode {
		return src
	}
	// Index dst's keys (the last of repeats wins, as in mappingValue), so a
	// merge of big mappings stays linear.
	index := make(map[string]int, len(dst.Content)/2)
	for i := 0; i+1 < len(dst.Content); i += 2 {
		index[dst.Content[i].Value] = i
	}
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		idx, ok := index[k.Value]
		if !ok {
			if !isNull(v) {
				index[k.Value] = len(dst.Content)
				dst.Content = append(dst.Content, k, v)
			}
			continue
		}
		old := dst.Content[idx+1]
		if depth == 0 && k.Value == "ssh_authorized_keys" {
			dst.Content[idx+1] = unionKeys(old, v)
			continue
		}
		dst.Content[idx+1] = mergeNode(old, v, depth+1)
	}
	return dst
}

// unionKeys is a followed by the items of b not in a.
func unionKeys(a, b *yaml.Node) *yaml.Node {
	if isNull(b) {
		return a
	}
	if a.Kind != yaml.SequenceNode || b.Kind != yaml.SequenceNode {
		if b.Kind == yaml.SequenceNode || a.Kind != yaml.SequenceNode {
			return b
		}
		b = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{b}}
	}
	out := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: a.Line, Column: a.Column}
	seen := map[string]bool{}
	for _, list := range []*yaml.Node{a, b} {
		for _, item := range list.Content {
			if item.Kind == yaml.ScalarNode && seen[item.Value] {
				continue
			}
			seen[item.Value] = true
			out.Content = append(out.Content, item)
		}
	}
	return out
}

// cloneTree deep-copies n.
func cloneTree(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	c := *n
	if n.Content != nil {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, ch := range n.Content {
			c.Content[i] = cloneTree(ch)
		}
	}
	return &c
}
