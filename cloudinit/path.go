package cloudinit

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// keyPath is the path of a key in a document: mapping keys, and "[i]"
// for the i-th item of a list.
type keyPath []string

func (p keyPath) add(seg string) keyPath {
	out := make(keyPath, len(p), len(p)+1)
	copy(out, p)
	return append(out, seg)
}

func (p keyPath) index(i int) keyPath {
	return p.add("[" + strconv.Itoa(i) + "]")
}

// String joins keys with dots and puts list indexes in brackets:
// "write_files[2].permissions".
func (p keyPath) String() string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 && !isIndexSeg(s) {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

func isIndexSeg(s string) bool {
	return len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']'
}

func indexOf(s string) (int, bool) {
	if !isIndexSeg(s) {
		return 0, false
	}
	i, err := strconv.Atoi(s[1 : len(s)-1])
	return i, err == nil && i >= 0
}

// mappingValue returns the value node of key in the mapping m and the index
// of its key node in m.Content, or nil, -1. The last of repeated keys wins.
func mappingValue(m *yaml.Node, key string) (*yaml.Node, int) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, -1
	}
	for i := len(m.Content) - 2; i >= 0; i -= 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1], i
		}
	}
	return nil, -1
}

// lookup returns the node at p under n, its parent and the index of the
// node (the key node for a mapping) in the parent's Content.
func lookup(n *yaml.Node, p keyPath) (node, parent *yaml.Node, idx int) {
	node, idx = n, -1
	for _, seg := range p {
		parent = node
		switch node.Kind {
		case yaml.MappingNode:
			node, idx = mappingValue(node, seg)
		case yaml.SequenceNode:
			i, ok := indexOf(seg)
			if !ok || i >= len(node.Content) {
				return nil, nil, -1
			}
			node, idx = node.Content[i], i
		default:
			return nil, nil, -1
		}
		if node == nil {
			return nil, nil, -1
		}
	}
	return node, parent, idx
}

// remove deletes the node at p from the tree under n; it reports whether
// there was one.
func remove(n *yaml.Node, p keyPath) bool {
	if len(p) == 0 {
		return false
	}
	node, parent, idx := lookup(n, p)
	if node == nil || parent == nil {
		return false
	}
	switch parent.Kind {
	case yaml.MappingNode:
		parent.Content = append(parent.Content[:idx:idx], parent.Content[idx+2:]...)
	case yaml.SequenceNode:
		parent.Content = append(parent.Content[:idx:idx], parent.Content[idx+1:]...)
	}
	return true
}
