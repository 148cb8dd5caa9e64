package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/berthos/berth/datasources/source"
)

// DefaultEndpoint is the Nova metadata service.
const DefaultEndpoint = "http://169.254.169.254"

// EndpointEnv overrides the endpoint when no option does.
const EndpointEnv = "BERTH_OPENSTACK_METADATA_URL"

// Source reads the Nova metadata service.
type Source struct {
	endpoint string
	getter   source.Getter
}

// Option configures a Source.
type Option func(*Source)

// WithEndpoint sets the base URL (default $BERTH_OPENSTACK_METADATA_URL,
// else http://169.254.169.254).
func WithEndpoint(u string) Option { return func(s *Source) { s.endpoint = u } }

// WithHTTPClient sets the HTTP client (default http.DefaultClient).
func WithHTTPClient(c *http.Client) Option { return func(s *Source) { s.getter.Client = c } }

// New returns the openstack source.
func New(opts ...Option) *Source {
	s := &Source{endpoint: os.Getenv(EndpointEnv)}
	for _, o := range opts {
		o(s)
	}
	if s.endpoint == "" {
		s.endpoint = DefaultEndpoint
	}
	s.endpoint = strings.TrimRight(s.endpoint, "/")
	return s
}

// Name is "openstack".
func (s *Source) Name() string { return "openstack" }

// Needs is Network.
func (s *Source) Needs() source.Needs { return source.Network }

// Fetch reads meta_data.json (required), user_data and network_data.json
// (each optional: 404 means none).
func (s *Source) Fetch(ctx context.Context) (*source.Result, error) {
	base := s.endpoint + "/openstack/latest/"
	mdRaw, err := s.getter.Get(ctx, base+"meta_data.json")
	if err != nil {
		return nil, fmt.Errorf("openstack: %w", err)
	}
	_, md, err := ParseMetaData(mdRaw)
	if err != nil {
		return nil, fmt.Errorf("openstack: %w", err)
	}
	r := &source.Result{Meta: md}
	ud, err := s.getter.Get(ctx, base+"user_data")
	switch {
	case err == nil:
		r.UserData = ud
	case !errors.Is(err, source.ErrNotFound):
		return nil, fmt.Errorf("openstack: %w", err)
	}
	nd, err := s.getter.Get(ctx, base+"network_data.json")
	switch {
	case err == nil:
		cfg, err := ParseNetworkData(nd)
		if err != nil {
			return nil, fmt.Errorf("openstack: %w", err)
		}
		r.Network = cfg
	case !errors.Is(err, source.ErrNotFound):
		return nil, fmt.Errorf("openstack: %w", err)
	}
	return r, nil
}
