// Package file reads user-data from a file (`file:/path`), under --root.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berthos/berth/datasources/source"
)

// Source reads user-data from one path.
type Source struct {
	root, path string
}

// Option configures a Source.
type Option func(*Source)

// WithRoot reads the path under dir (default "/").
func WithRoot(dir string) Option { return func(s *Source) { s.root = dir } }

// New returns the file source for path.
func New(path string, opts ...Option) *Source {
	s := &Source{root: "/", path: path}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name is "file:<path>".
func (s *Source) Name() string { return "file:" + s.path }

// Needs is Local.
func (s *Source) Needs() source.Needs { return source.Local }

// Fetch reads the file; a missing file means absent.
func (s *Source) Fetch(ctx context.Context) (*source.Result, error) {
	if s.path == "" {
		return nil, fmt.Errorf("file: no path given (file:/path)")
	}
	b, err := os.ReadFile(filepath.Join(s.root, s.path))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("file %s: %w", s.path, source.ErrNotFound)
		}
		return nil, fmt.Errorf("file %s: %w", s.path, err)
	}
	return &source.Result{UserData: b}, nil
}
