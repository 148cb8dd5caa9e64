// Package cmdline reads user-data named by the kernel command line:
// `cloud-config-url=URL` (fetched), or `cloud-config=DATA` with DATA a
// base64 or URL-encoded cloud-config. (`cc.` keys are not user-data: they
// merge through the config layer.)
package cmdline

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthos/berth/datasources/source"
)

// Source reads root/proc/cmdline.
type Source struct {
	root   string
	getter source.Getter
}

// Option configures a Source.
type Option func(*Source)

// WithRoot reads proc/cmdline under dir (default "/").
func WithRoot(dir string) Option { return func(s *Source) { s.root = dir } }

// WithHTTPClient sets the client for cloud-config-url.
func WithHTTPClient(c *http.Client) Option { return func(s *Source) { s.getter.Client = c } }

// New returns the cmdline source.
func New(opts ...Option) *Source {
	s := &Source{root: "/"}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name is "cmdline".
func (s *Source) Name() string { return "cmdline" }

// Needs is Local (a cloud-config-url needs the network, which the runner
// brings up for network sources anyway).
func (s *Source) Needs() source.Needs { return source.Local }

// Fetch reads the command line and, for cloud-config-url, the URL.
func (s *Source) Fetch(ctx context.Context) (*source.Result, error) {
	raw, err := os.ReadFile(filepath.Join(s.root, "proc/cmdline"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("cmdline: %w: %w", source.ErrNotFound, err)
		}
		return nil, fmt.Errorf("cmdline: %w", err)
	}
	u, data, err := Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("cmdline: %w", err)
	}
	switch {
	case data != nil:
		return &source.Result{UserData: data}, nil
	case u != "":
		b, err := s.getter.Get(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("cmdline cloud-config-url: %w", err)
		}
		return &source.Result{UserData: b}, nil
	}
	return nil, fmt.Errorf("cmdline: no cloud-config-url= or cloud-config=: %w", source.ErrNotFound)
}

// Parse finds cloud-config-url and cloud-config on a command line. The
// last of each wins, as the kernel does with repeated parameters; inline
// data beats a URL.
func Parse(cmdline string) (u string, data []byte, err error) {
	var inline string
	var haveInline bool
	for _, f := range Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "cloud-config-url":
			u = v
		case "cloud-config":
			inline, haveInline = v, true
		}
	}
	if haveInline {
		data, err = decode(inline)
		if err != nil {
			return "", nil, err
		}
		return u, data, nil
	}
	if u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") {
			return "", nil, fmt.Errorf("cloud-config-url=%q: not an http(s) URL", u)
		}
	}
	return u, nil, nil
}

// decode takes base64 (standard or URL alphabet, padded or not) when the
// result is a cloud-config or script, else URL-encoding.
func decode(v string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) > 0 && b[0] == '#' {
			return b, nil
		}
	}
	s, err := url.QueryUnescape(v)
	if err != nil {
		return nil, fmt.Errorf("cloud-config=: neither base64 nor URL-encoded: %w", err)
	}
	if !strings.HasPrefix(s, "#") {
		return nil, fmt.Errorf("cloud-config=: decoded data does not start with #cloud-config or a #! line")
	}
	return []byte(s), nil
}

// Fields splits a command line on spaces, keeping double-quoted parts
// together and dropping the quotes, as the kernel does.
func Fields(s string) []string {
	var out []string
	var b strings.Builder
	quoted, in := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			in = true
		case !quoted && (r == ' ' || r == '\n' || r == '\t'):
			if in {
				out = append(out, b.String())
				b.Reset()
				in = false
			}
		default:
			b.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, b.String())
	}
	return out
}
