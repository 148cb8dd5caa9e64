package cloudinit

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// HasErrors reports whether any entry is an error (not a warning).
func (r *Report) HasErrors() bool {
	if r == nil {
		return false
	}
	for _, e := range r.Entries {
		if e.Error {
			return true
		}
	}
	return false
}

// Errors returns the error entries only.
func (r *Report) Errors() []Entry {
	if r == nil {
		return nil
	}
	var out []Entry
	for _, e := range r.Entries {
		if e.Error {
			out = append(out, e)
		}
	}
	return out
}

// String prints one entry a line, in the order found.
func (r *Report) String() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	for _, e := range r.Entries {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Merge appends o's entries to r.
func (r *Report) Merge(o *Report) {
	if o != nil {
		r.Entries = append(r.Entries, o.Entries...)
	}
}

func (r *Report) add(isErr bool, source string, n *yaml.Node, path, format string, args ...any) {
	e := Entry{Error: isErr, Source: source, Path: path, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	r.Entries = append(r.Entries, e)
}

// sort orders entries by position, keeping the order of equal ones.
func (r *Report) sort() {
	sort.SliceStable(r.Entries, func(i, j int) bool {
		a, b := r.Entries[i], r.Entries[j]
		if a.Source != b.Source {
			return false
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// String is `source:line:col: path: message`, with "warning: " before
// the message of a warning.
func (e Entry) String() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if !e.Error {
		b.WriteString("warning: ")
	}
	b.WriteString(e.Message)
	return b.String()
}
