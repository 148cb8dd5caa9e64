package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// ErrUnknownKey marks a key Berth's config has no place for.
var ErrUnknownKey = errors.New("unknown key")

// Get returns the node at a dotted key ("rancher.network.dns") in tree.
func Get(tree *yaml.Node, key string) (*yaml.Node, bool) {
	p, _ := splitKey(key)
	n, _, _ := lookup(tree, p)
	return n, n != nil
}

// KnownKey reports whether key names a place in the Config type.
func KnownKey(key string) bool {
	_, t := splitKey(key)
	return t != nil
}

// ValueNode types a value like the kernel command line does (integers,
// true/false, [a,b] lists, the rest strings), then fits it to the key: a
// string key keeps the text as a string, a list key gets a one-item list
// for a single value. It refuses a value of the wrong type with the
// type the key wants: `rancher.network.dhcp_timeout: want an integer, got "abc"`.
func ValueNode(key, value string) (*yaml.Node, error) {
	p, t := splitKey(key)
	if t == nil {
		return nil, fmt.Errorf("%s: %w", key, ErrUnknownKey)
	}
	val := typedNode(value, false, 0, 0)
	if t.Kind() == reflect.String && val.Kind == yaml.ScalarNode {
		val.Tag = "!!str"
	}
	val = listIfWanted(val, t)
	tmp := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	setPath(tmp, p, val, 0, 0)
	_, rep := check("value", tmp)
	if errs := rep.Errors(); len(errs) > 0 {
		e := errs[0]
		return nil, fmt.Errorf("%s: %s", e.Path, e.Message)
	}
	return val, nil
}

// Set sets key to value (typed as ValueNode does) in doc, a document or
// mapping node, keeping every other key, its order and comments.
func Set(doc *yaml.Node, key, value string) error {
	val, err := ValueNode(key, value)
	if err != nil {
		return err
	}
	m, err := docMapping(doc)
	if err != nil {
		return err
	}
	p, _ := splitKey(key)
	setPath(m, p, val, 0, 0)
	return nil
}

// MergeInto merges the mapping src into doc (a document or mapping node)
// like configuration layers merge: maps key by key, lists replace,
// ssh_authorized_keys the union.
func MergeInto(doc, src *yaml.Node) error {
	m, err := docMapping(doc)
	if err != nil {
		return err
	}
	mergeTree(m, src)
	return nil
}

// docMapping returns the top mapping of doc, creating it in an empty document.
func docMapping(doc *yaml.Node) (*yaml.Node, error) {
	if doc.Kind == yaml.MappingNode {
		return doc, nil
	}
	if doc.Kind == 0 {
		doc.Kind = yaml.DocumentNode
	}
	if doc.Kind != yaml.DocumentNode {
		return nil, fmt.Errorf("config: %w: the top level must be a mapping", ErrSyntax)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
	}
	if doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config: %w: the top level must be a mapping", ErrSyntax)
	}
	return doc.Content[0], nil
}

// ReadDocument parses a config file for editing, comments and all. Empty
// data gives an empty document.
func ReadDocument(source string, data []byte) (*yaml.Node, error) {
	doc := &yaml.Node{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, syntaxError(source, data, err)
	}
	if _, err := docMapping(doc); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return doc, nil
}

// Encode renders a node as YAML with two-space indentation.
func Encode(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b.Bytes(), nil
}

// secretKeys are left out of `ros config export` unless --private.
var secretKeys = []keyPath{
	{"ssh_authorized_keys"},
	{"rancher", "password"},
	{"rancher", "ssh", "keys"},
	{"rancher", "registry_auths"},
	{"rancher", "docker", "server_key"},
	{"rancher", "docker", "ca_key"},
	{"rancher", "system_docker", "server_key"},
	{"rancher", "system_docker", "ca_key"},
	{"rancher", "bootstrap_docker", "server_key"},
	{"rancher", "bootstrap_docker", "ca_key"},
}

// StripSecrets removes SSH keys, passwords, TLS private keys and registry
// credentials from tree (a document or mapping node).
func StripSecrets(tree *yaml.Node) {
	m := tree
	if m.Kind == yaml.DocumentNode && len(m.Content) > 0 {
		m = m.Content[0]
	}
	for _, p := range secretKeys {
		remove(m, p)
	}
}

// StripComments removes every comment from tree (the merged snapshot's
// comments come from many files and would mislead).
func StripComments(tree *yaml.Node) {
	if tree == nil {
		return
	}
	tree.HeadComment, tree.LineComment, tree.FootComment = "", "", ""
	for _, c := range tree.Content {
		StripComments(c)
	}
}
