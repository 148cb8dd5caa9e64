// Package gce reads the Google Compute Engine metadata server with
// cloud.google.com/go/compute/metadata.
package gce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/compute/metadata"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/source"
)

// HostEnv is the variable the metadata library reads for its host.
const HostEnv = "GCE_METADATA_HOST"

// Source reads GCE metadata.
type Source struct {
	endpoint string // "http://host:port", empty: the library's default
	client   *http.Client
}

// Option configures a Source.
type Option func(*Source)

// WithEndpoint sends requests to u ("http://127.0.0.1:8080") instead of
// $GCE_METADATA_HOST or 169.254.169.254.
func WithEndpoint(u string) Option { return func(s *Source) { s.endpoint = u } }

// WithHTTPClient sets the HTTP client.
func WithHTTPClient(c *http.Client) Option { return func(s *Source) { s.client = c } }

// New returns the gce source.
func New(opts ...Option) *Source {
	s := &Source{}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name is "gce".
func (s *Source) Name() string { return "gce" }

// Needs is Network.
func (s *Source) Needs() source.Needs { return source.Network }

// transport sends every request to another host when one is set (the
// library takes its host only from the environment), and turns an
// unreachable service (source.Unreachable: refused, no route) into an
// error the library does not retry: the source is absent, and retrying
// would only delay the boot.
type transport struct {
	to   *url.URL
	next http.RoundTripper
}

// refusedError is an unreachable service, opaque to the library's retryer.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.to != nil {
		req = req.Clone(req.Context())
		req.URL.Scheme, req.URL.Host, req.Host = t.to.Scheme, t.to.Host, t.to.Host
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil && source.Unreachable(err) {
		return nil, &refusedError{msg: err.Error()}
	}
	return resp, err
}

func (s *Source) metadataClient() (*metadata.Client, error) {
	c := http.Client{}
	if s.client != nil {
		c = *s.client
	}
	t := transport{next: c.Transport}
	if t.next == nil {
		t.next = http.DefaultTransport
	}
	if s.endpoint != "" {
		u, err := url.Parse(s.endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("gce: endpoint %q: not a URL", s.endpoint)
		}
		t.to = u
	}
	c.Transport = t
	return metadata.NewWithOptions(&metadata.Options{Client: &c}), nil
}

// Fetch reads user-data (the user-data attribute, else startup-script),
// identity, addresses and SSH keys.
func (s *Source) Fetch(ctx context.Context) (*source.Result, error) {
	c, err := s.metadataClient()
	if err != nil {
		return nil, err
	}
	v := Values{}
	get := func(p string, required bool) error {
		val, err := getRetry(ctx, c, p)
		if err != nil {
			var nd metadata.NotDefinedError
			if errors.As(err, &nd) && !required {
				return nil
			}
			return wrap(p, err)
		}
		v[p] = val
		return nil
	}
	if err := get("instance/id", true); err != nil {
		return nil, err
	}
	for _, p := range []string{"instance/hostname", "instance/name", "instance/zone",
		"instance/network-interfaces/0/ip", "instance/network-interfaces/0/access-configs/0/external-ip",
		"instance/attributes/user-data", "instance/attributes/startup-script",
		"instance/attributes/ssh-keys", "instance/attributes/sshKeys",
		"instance/attributes/block-project-ssh-keys",
		"project/attributes/ssh-keys", "project/attributes/sshKeys"} {
		if err := get(p, false); err != nil {
			return nil, err
		}
	}
	ud, meta := Parse(v)
	return &source.Result{UserData: ud, Meta: meta}, nil
}

// getRetry adds to the library's retries the ones it lacks: a body cut
// short and a connection closed before the answer.
func getRetry(ctx context.Context, c *metadata.Client, p string) (string, error) {
	wait := 100 * time.Millisecond
	for {
		v, err := c.GetWithContext(ctx, p)
		if !(errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
			return v, err
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("%w: %w", source.ErrTimeout, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("%w: %w", source.ErrTimeout, err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func wrap(p string, err error) error {
	var nd metadata.NotDefinedError
	var refused *refusedError
	switch {
	case errors.As(err, &nd), errors.As(err, &refused):
		return fmt.Errorf("gce %s: %w: %w", p, source.ErrNotFound, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("gce %s: %w: %w", p, source.ErrTimeout, err)
	}
	return fmt.Errorf("gce %s: %w", p, err)
}

// Values are fetched metadata paths (under /computeMetadata/v1/) and
// their bodies; a missing path was not defined.
type Values map[string]string

// Parse turns fetched values into user-data and Metadata. SSH keys come
// from the instance's ssh-keys and legacy sshKeys, then the project's
// unless the instance sets block-project-ssh-keys; each line is
// `user:key` and the user name is dropped.
func Parse(v Values) ([]byte, cloudinit.Metadata) {
	m := cloudinit.Metadata{
		InstanceID:  strings.TrimSpace(v["instance/id"]),
		Hostname:    strings.TrimSpace(v["instance/hostname"]),
		PrivateIPv4: strings.TrimSpace(v["instance/network-interfaces/0/ip"]),
		PublicIPv4:  strings.TrimSpace(v["instance/network-interfaces/0/access-configs/0/external-ip"]),
	}
	m.LocalHostname, _, _ = strings.Cut(m.Hostname, ".")
	if z := strings.TrimSpace(v["instance/zone"]); z != "" {
		m.Zone = z[strings.LastIndexByte(z, '/')+1:]
		if i := strings.LastIndexByte(m.Zone, '-'); i > 0 {
			m.Region = m.Zone[:i]
		}
	}
	if n := strings.TrimSpace(v["instance/name"]); n != "" {
		m.Extra = map[string]string{"name": n}
	}
	keys := []string{"instance/attributes/ssh-keys", "instance/attributes/sshKeys"}
	if !strings.EqualFold(strings.TrimSpace(v["instance/attributes/block-project-ssh-keys"]), "true") {
		keys = append(keys, "project/attributes/ssh-keys", "project/attributes/sshKeys")
	}
	for _, p := range keys {
		for _, line := range strings.Split(v[p], "\n") {
			line = strings.TrimSpace(line)
			user, key, ok := strings.Cut(line, ":")
			if !ok || user == "" || strings.Contains(user, " ") {
				continue
			}
			if key = strings.TrimSpace(key); key != "" && !slices.Contains(m.SSHPublicKeys, key) {
				m.SSHPublicKeys = append(m.SSHPublicKeys, key)
			}
		}
	}
	ud, ok := v["instance/attributes/user-data"]
	if !ok {
		ud, ok = v["instance/attributes/startup-script"]
	}
	if !ok {
		return nil, m
	}
	return []byte(ud), m
}
