// Package url reads user-data from a URL (`url:http://...`).
package url

import (
	"context"
	"fmt"
	"net/http"

	"github.com/berthos/berth/datasources/source"
)

// Source fetches user-data from one URL.
type Source struct {
	url    string
	getter source.Getter
}

// Option configures a Source.
type Option func(*Source)

// WithHTTPClient sets the HTTP client (default http.DefaultClient).
func WithHTTPClient(c *http.Client) Option { return func(s *Source) { s.getter.Client = c } }

// New returns the url source for u.
func New(u string, opts ...Option) *Source {
	s := &Source{url: u}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name is "url:<URL>".
func (s *Source) Name() string { return "url:" + s.url }

// Needs is Network.
func (s *Source) Needs() source.Needs { return source.Network }

// Fetch gets the URL; a 404 means absent. It says nothing about metadata.
func (s *Source) Fetch(ctx context.Context) (*source.Result, error) {
	if s.url == "" {
		return nil, fmt.Errorf("url: no URL given (url:http://...)")
	}
	b, err := s.getter.Get(ctx, s.url)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	return &source.Result{UserData: b}, nil
}
