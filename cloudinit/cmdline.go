package cloudinit

import (
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// CmdlineSource is the Source of report entries about the kernel command line.
const CmdlineSource = "cmdline"

// cmdArg is one kernel command-line argument.
type cmdArg struct {
	key      string
	value    string
	hasValue bool // key=value rather than a bare key
	quoted   bool // quotes were used: the value is a string, untyped
	col      int  // 1-based column of the argument
}

// tokenizeCmdline splits a kernel command line like the kernel does:
// blanks separate arguments except inside double (or single) quotes, which
// are removed. The `--` separator is dropped; arguments after it count.
func tokenizeCmdline(s string) []cmdArg {
	var (
		args  []cmdArg
		cur   strings.Builder
		in    bool
		quote rune
		quotd bool
		start int
	)
	flush := func() {
		if !in {
			return
		}
		tok := cur.String()
		cur.Reset()
		in = false
		if tok == "--" && !quotd {
			return
		}
		a := cmdArg{col: start + 1, quoted: quotd}
		a.key, a.value, a.hasValue = strings.Cut(tok, "=")
		if a.key != "" {
			args = append(args, a)
		}
	}
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			if !in {
				in, start, quotd = true, i, false
			}
			quote, quotd = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			flush()
		default:
			if !in {
				in, start, quotd = true, i, false
			}
			cur.WriteRune(r)
		}
	}
	flush()
	return args
}

// CmdlineValue returns the value of the last `key=value` (or bare `key`,
// value "") on the kernel command line, for keys outside the config such
// as `cloud-config-url`.
func CmdlineValue(cmdline, key string) (string, bool) {
	val, found := "", false
	for _, a := range tokenizeCmdline(cmdline) {
		if a.key == key {
			val, found = a.value, true
		}
	}
	return val, found
}

var intRE = regexp.MustCompile(`^[+-]?[0-9]+$`)

// typedNode turns a command-line value into a YAML node: integers,
// true/false, [a,b] lists; quoted values stay strings.
func typedNode(value string, quoted bool, line, col int) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value, Line: line, Column: col}
	if strings.HasPrefix(value, "[") && strings.HasSuffix(value, "]") {
		n.Kind, n.Tag, n.Value = yaml.SequenceNode, "!!seq", ""
		inner := strings.TrimSpace(value[1 : len(value)-1])
		if inner == "" {
			return n
		}
		for _, item := range strings.Split(inner, ",") {
			n.Content = append(n.Content, typedNode(strings.TrimSpace(item), false, line, col))
		}
		return n
	}
	if quoted {
		return n
	}
	switch {
	case intRE.MatchString(value):
		n.Tag = "!!int"
	case value == "true" || value == "false":
		n.Tag = "!!bool"
	}
	return n
}

// CmdlineTree builds the config document the kernel command line gives:
// `rancher.a.b=v` nests under rancher, `cc.a.b=v` is top-level `a.b`, a
// bare key is true, and the last repeated key wins. Other arguments are
// not config and are left out.
func CmdlineTree(cmdline string) *yaml.Node {
	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	for _, a := range tokenizeCmdline(cmdline) {
		var key string
		switch {
		case strings.HasPrefix(a.key, "rancher."):
			key = a.key
		case strings.HasPrefix(a.key, "cc."):
			key = strings.TrimPrefix(a.key, "cc.")
		default:
			continue
		}
		if strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
			continue
		}
		p, t := splitKey(key)
		var val *yaml.Node
		if a.hasValue {
			val = typedNode(a.value, a.quoted, 1, a.col)
		} else {
			val = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true", Line: 1, Column: a.col}
		}
		setPath(root, p, listIfWanted(val, t), 1, a.col)
	}
	return root
}

// listIfWanted wraps a scalar in a one-item list when the key is a list.
func listIfWanted(val *yaml.Node, t reflect.Type) *yaml.Node {
	if t != nil && t.Kind() == reflect.Slice && val.Kind == yaml.ScalarNode {
		return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: val.Line, Column: val.Column, Content: []*yaml.Node{val}}
	}
	return val
}

// setPath sets the value at p under the mapping root, creating mappings on
// the way and replacing anything that is not a mapping. The key nodes it
// creates get line and col.
func setPath(root *yaml.Node, p keyPath, val *yaml.Node, line, col int) {
	n := root
	for i, seg := range p {
		old, idx := mappingValue(n, seg)
		if i == len(p)-1 {
			if old != nil {
				if val.Kind == yaml.ScalarNode && old.Kind == yaml.ScalarNode {
					val.LineComment, val.HeadComment, val.FootComment = old.LineComment, old.HeadComment, old.FootComment
				}
				n.Content[idx+1] = val
			} else {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: seg, Line: line, Column: col}, val)
			}
			return
		}
		if old == nil || old.Kind != yaml.MappingNode {
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line, Column: col}
			if old != nil {
				n.Content[idx+1] = m
			} else {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: seg, Line: line, Column: col}, m)
			}
			old = m
		}
		n = old
	}
}

// ParseCmdline decodes the config part of a kernel command line.
func ParseCmdline(cmdline string) (*Config, *Report) {
	cfg, rep := check(CmdlineSource, CmdlineTree(cmdline))
	return cfg, rep
}
