package cloudinit

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder fills typed values from a yaml.Node tree, reporting each value
// of the wrong type with its position and dropping it from the tree, so
// that a later decode of the same tree is clean and a lower layer's value
// stays when the tree is merged.
type decoder struct {
	source string
	rep    *Report
	fields map[reflect.Type]map[string]int // yaml name -> field index, per struct type
}

// field finds the struct field of t whose yaml name is key.
func (d *decoder) field(t reflect.Type, key string) (int, bool) {
	if d.fields == nil {
		d.fields = map[reflect.Type]map[string]int{}
	}
	m, ok := d.fields[t]
	if !ok {
		m = make(map[string]int, t.NumField())
		for i := 0; i < t.NumField(); i++ {
			if name := yamlName(t.Field(i)); name != "" {
				m[name] = i
			}
		}
		d.fields[t] = m
	}
	i, ok := m[key]
	return i, ok
}

var (
	commandType = reflect.TypeOf(Command{})
	mountType   = reflect.TypeOf(Mount{})
	serviceType = reflect.TypeOf(Service{})
)

func (d *decoder) errorf(n *yaml.Node, p keyPath, format string, args ...any) {
	if d.rep != nil {
		d.rep.add(true, d.source, n, p.String(), format, args...)
	}
}

func (d *decoder) warnf(n *yaml.Node, p keyPath, format string, args ...any) {
	if d.rep != nil {
		d.rep.add(false, d.source, n, p.String(), format, args...)
	}
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe names what a node is for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// decode fills v from n. It returns false when n is of the wrong type: the
// caller then drops n. Errors inside n drop only the bad parts.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, p keyPath) bool {
	if isNull(n) {
		return true
	}
	switch v.Type() {
	case commandType:
		return d.decodeCommand(n, v.Addr().Interface().(*Command), p)
	case mountType:
		return d.decodeMount(n, v.Addr().Interface().(*Mount), p)
	}
	switch v.Kind() {
	case reflect.Pointer:
		nv := reflect.New(v.Type().Elem())
		if !v.IsNil() {
			nv.Elem().Set(v.Elem())
		}
		if !d.decode(n, nv.Elem(), p) {
			return false
		}
		v.Set(nv)
		return true
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, p, "want a string, got %s", describe(n))
			return false
		}
		v.SetString(n.Value)
		return true
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, ok := scalarInt(n)
		if !ok || v.OverflowInt(i) {
			d.errorf(n, p, "want an integer, got %s", describe(n))
			return false
		}
		v.SetInt(i)
		return true
	case reflect.Bool:
		b, ok := scalarBool(n)
		if !ok {
			d.errorf(n, p, "want true or false, got %s", describe(n))
			return false
		}
		v.SetBool(b)
		return true
	case reflect.Slice:
		return d.decodeSlice(n, v, p)
	case reflect.Map:
		return d.decodeMap(n, v, p)
	case reflect.Struct:
		return d.decodeStruct(n, v, p)
	}
	d.errorf(n, p, "cannot decode into %s", v.Type())
	return false
}

func scalarInt(n *yaml.Node) (int64, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		return 0, false
	}
	s := strings.TrimSpace(n.Value)
	if n.Tag == "!!str" {
		// A quoted "1500" is still a number; "abc" is not.
		i, err := strconv.ParseInt(s, 10, 64)
		return i, err == nil
	}
	s = strings.ReplaceAll(s, "_", "")
	if len(s) > 1 && s[0] == '0' && s[1] >= '0' && s[1] <= '9' {
		s = "0o" + s[1:] // YAML 1.1 octal
	} else if len(s) > 2 && (s[0] == '+' || s[0] == '-') && s[1] == '0' && s[2] >= '0' && s[2] <= '9' {
		s = s[:1] + "0o" + s[2:]
	}
	i, err := strconv.ParseInt(s, 0, 64)
	return i, err == nil
}

func scalarBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!bool" && n.Tag != "!!str") {
		return false, false
	}
	switch strings.ToLower(n.Value) {
	case "true", "yes", "on", "y":
		return true, true
	case "false", "no", "off", "n":
		return false, true
	}
	return false, false
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, p keyPath) bool {
	et := v.Type().Elem()
	if n.Kind == yaml.ScalarNode && et.Kind() == reflect.String {
		// A single value where a list is expected: a one-item list, as
		// the kernel command line writes `datasources=ec2`.
		v.Set(reflect.ValueOf([]string{n.Value}).Convert(v.Type()))
		return true
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, p, "want a list, got %s", describe(n))
		return false
	}
	out := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	kept := n.Content[:0:0]
	for i, item := range n.Content {
		if isNull(item) && et != commandType {
			continue
		}
		ev := reflect.New(et).Elem()
		if !d.decode(item, ev, p.index(i)) {
			continue
		}
		kept = append(kept, item)
		out = reflect.Append(out, ev)
	}
	n.Content = kept
	v.Set(out)
	return true
}

// pairs returns the key and value nodes of a mapping.
func pairs(n *yaml.Node) [][2]*yaml.Node {
	out := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, [2]*yaml.Node{n.Content[i], n.Content[i+1]})
	}
	return out
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, p keyPath) bool {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.errorf(n, p, "cannot decode into %s", t)
		return false
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	et := t.Elem()
	if n.Kind == yaml.SequenceNode && et.Kind() == reflect.String {
		// KEY=VALUE list, as compose labels and environments allow.
		kept := n.Content[:0:0]
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				d.errorf(item, p.index(i), "want KEY=VALUE, got %s", describe(item))
				continue
			}
			k, val, _ := strings.Cut(item.Value, "=")
			v.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), reflect.ValueOf(val).Convert(et))
			kept = append(kept, item)
		}
		n.Content = kept
		return true
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, p, "want a mapping, got %s", describe(n))
		return false
	}
	kept := n.Content[:0:0]
	for _, kv := range pairs(n) {
		k, val := kv[0], kv[1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, p, "want a key, got %s", describe(k))
			continue
		}
		cp := p.add(k.Value)
		ev := reflect.New(et).Elem()
		if old := v.MapIndex(reflect.ValueOf(k.Value).Convert(t.Key())); old.IsValid() {
			ev.Set(old)
		}
		if et.Kind() == reflect.String && val.Kind == yaml.MappingNode && isUlimit(p) {
			ev.SetString(ulimitString(val))
		} else if !d.decode(val, ev, cp) {
			continue
		}
		if isNull(val) && et.Kind() == reflect.Pointer && ev.IsNil() {
			ev.Set(reflect.New(et.Elem()))
		}
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), ev)
		kept = append(kept, k, val)
	}
	n.Content = kept
	return true
}

func isUlimit(p keyPath) bool {
	return len(p) > 0 && p[len(p)-1] == "ulimits"
}

// ulimitString turns compose's `nofile: {soft: 1, hard: 2}` into "1:2".
func ulimitString(n *yaml.Node) string {
	var soft, hard string
	for _, kv := range pairs(n) {
		switch kv[0].Value {
		case "soft":
			soft = kv[1].Value
		case "hard":
			hard = kv[1].Value
		}
	}
	return soft + ":" + hard
}

// fieldIndex finds the struct field whose yaml name is key.
func fieldIndex(t reflect.Type, key string) (int, bool) {
	for i := 0; i < t.NumField(); i++ {
		if yamlName(t.Field(i)) == key {
			return i, true
		}
	}
	return 0, false
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, p keyPath) bool {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, p, "want a mapping, got %s", describe(n))
		return false
	}
	t := v.Type()
	kept := n.Content[:0:0]
	for _, kv := range pairs(n) {
		k, val := kv[0], kv[1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, p, "want a key, got %s", describe(k))
			continue
		}
		cp := p.add(k.Value)
		i, ok := d.field(t, k.Value)
		if !ok {
			d.warnf(k, cp, "unknown key (ignored)")
			kept = append(kept, k, val)
			continue
		}
		f := v.Field(i)
		var good bool
		switch {
		case t == serviceType && (k.Value == "command" || k.Value == "entrypoint"):
			good = d.decodeArgs(val, f, cp)
		case k.Value == "environment" && f.Kind() == reflect.Slice:
			good = d.decodeEnv(val, f, cp)
		default:
			good = d.decode(val, f, cp)
		}
		if good {
			kept = append(kept, k, val)
			if why := inert(cp.String(), val); why != "" {
				d.warnf(k, cp, "%s", why)
			}
		}
	}
	n.Content = kept
	return true
}

// inert says why Berth does not act on a RancherOS key it reads (so that
// a config written for RancherOS checks clean of unknown keys), or "" for
// a key it uses.
func inert(path string, val *yaml.Node) string {
	switch path {
	case "rancher.password":
		return "not used: the console's SSH takes keys only (ssh_authorized_keys)"
	case "rancher.log":
		return "not used: the boot always logs to the console and to /var/log"
	case "rancher.restart_services":
		return "not needed: a write_files entry for a service's container is in place before the container first starts, and a changed one recreates it"
	case "rancher.console":
		if val.Kind == yaml.ScalarNode && val.Value != "" && val.Value != "default" {
			return fmt.Sprintf("not used: Berth ships one console, default (busybox and dropbear), not %q", val.Value)
		}
	}
	return ""
}

// decodeCommand: a string is a shell line, a list an argv, [] a no-op.
func (d *decoder) decodeCommand(n *yaml.Node, c *Command, p keyPath) bool {
	switch n.Kind {
	case yaml.ScalarNode:
		*c = Command{Shell: n.Value}
		return true
	case yaml.SequenceNode:
		argv := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				d.errorf(item, p.index(i), "want a string, got %s", describe(item))
				return false
			}
			argv = append(argv, item.Value)
		}
		*c = Command{Argv: argv}
		return true
	}
	d.errorf(n, p, "want a command line or an argv list, got %s", describe(n))
	return false
}

// decodeMount: [device, mountpoint, fstype, options], short lists padded.
func (d *decoder) decodeMount(n *yaml.Node, m *Mount, p keyPath) bool {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, p, "want a list [device, mountpoint, fstype, options], got %s", describe(n))
		return false
	}
	if len(n.Content) == 0 || len(n.Content) > 6 {
		d.errorf(n, p, "want 1 to 4 items [device, mountpoint, fstype, options], got %d", len(n.Content))
		return false
	}
	var f [6]string
	for i, item := range n.Content {
		switch {
		case isNull(item):
		case item.Kind == yaml.ScalarNode:
			f[i] = item.Value
		default:
			d.errorf(item, p.index(i), "want a string, got %s", describe(item))
			return false
		}
	}
	if len(n.Content) > 4 {
		d.warnf(n, p, "dump and pass fields (items 5 and 6) are ignored")
	}
	*m = Mount{Device: f[0], MountPoint: f[1], FSType: f[2], Options: f[3]}
	return true
}

// decodeArgs: a list, or a string split like a shell would.
func (d *decoder) decodeArgs(n *yaml.Node, v reflect.Value, p keyPath) bool {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		args, err := splitShell(n.Value)
		if err != nil {
			d.errorf(n, p, "%v", err)
			return false
		}
		v.Set(reflect.ValueOf(args))
		return true
	}
	return d.decode(n, v, p)
}

// decodeEnv: a KEY=VALUE list or a mapping.
func (d *decoder) decodeEnv(n *yaml.Node, v reflect.Value, p keyPath) bool {
	if n.Kind != yaml.MappingNode {
		return d.decode(n, v, p)
	}
	var env []string
	kept := n.Content[:0:0]
	for _, kv := range pairs(n) {
		k, val := kv[0], kv[1]
		switch {
		case k.Kind != yaml.ScalarNode:
			d.errorf(k, p, "want a key, got %s", describe(k))
			continue
		case isNull(val):
			env = append(env, k.Value)
		case val.Kind == yaml.ScalarNode:
			env = append(env, k.Value+"="+val.Value)
		default:
			d.errorf(val, p.add(k.Value), "want a string, got %s", describe(val))
			continue
		}
		kept = append(kept, k, val)
	}
	n.Content = kept
	v.Set(reflect.ValueOf(env))
	return true
}

// splitShell splits s into words like a POSIX shell: blanks separate,
// single quotes are literal, double quotes allow backslash escapes.
func splitShell(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
		esc   bool
	)
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				esc = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			esc, in = true, true
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if esc {
		return nil, fmt.Errorf("trailing backslash")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
