// Package ec2 reads the EC2 instance metadata service (IMDS) with the AWS
// SDK's imds client: an IMDSv2 session token first, the token-less IMDSv1
// fallback only when allowed.
package ec2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/berthos/berth/datasources/source"
)

// DefaultEndpoint is the IMDS address.
const DefaultEndpoint = "http://169.254.169.254"

// EndpointEnv overrides the endpoint when no option does (the same
// variable the AWS SDKs honour).
const EndpointEnv = "AWS_EC2_METADATA_SERVICE_ENDPOINT"

// Source reads EC2 metadata.
type Source struct {
	endpoint string
	client   *http.Client
	imdsv1   bool
	attempts int
}

// Option configures a Source.
type Option func(*Source)

// WithEndpoint sets the IMDS base URL (default $AWS_EC2_METADATA_SERVICE_ENDPOINT,
// else http://169.254.169.254).
func WithEndpoint(u string) Option { return func(s *Source) { s.endpoint = u } }

// WithHTTPClient sets the HTTP client (default: the SDK's).
func WithHTTPClient(c *http.Client) Option { return func(s *Source) { s.client = c } }

// WithIMDSv1 allows (default) or forbids the token-less fallback
// (`rancher.cloud_init.ec2.imdsv1`).
func WithIMDSv1(allow bool) Option { return func(s *Source) { s.imdsv1 = allow } }

// New returns the ec2 source.
func New(opts ...Option) *Source {
	s := &Source{endpoint: os.Getenv(EndpointEnv), imdsv1: true, attempts: 8}
	for _, o := range opts {
		o(s)
	}
	if s.endpoint == "" {
		s.endpoint = DefaultEndpoint
	}
	s.endpoint = strings.TrimRight(s.endpoint, "/")
	return s
}

// Name is "ec2".
func (s *Source) Name() string { return "ec2" }

// Needs is Network.
func (s *Source) Needs() source.Needs { return source.Network }

func (s *Source) newClient() *imds.Client {
	fallback := aws.FalseTernary
	if s.imdsv1 {
		fallback = aws.TrueTernary
	}
	o := imds.Options{
		Endpoint:       s.endpoint,
		EnableFallback: fallback,
		// The runner's context carries the deadline.
		DisableDefaultTimeout: true,
		// Our own backoff below; the default one waits up to a second.
		DisableDefaultMaxBackoff: true,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = s.attempts
			o.MaxBackoff = 2 * time.Second
			o.Backoff = backoff{}
			o.RateLimiter = ratelimit.None
			// An unreachable service is absent, at once.
			// A 401 means the token expired: Fetch starts over with a new
			// one rather than retrying with the stale one.
			o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
				if source.Unreachable(err) || status(err) == http.StatusUnauthorized {
					return aws.FalseTernary
				}
				return aws.UnknownTernary
			})}, o.Retryables...)
		}),
	}
	if s.client != nil {
		o.HTTPClient = s.client
	}
	return imds.New(o)
}

// Fetch reads user-data and metadata. When a token expires in the middle
// (401 after a good start), it starts over once with a fresh token.
func (s *Source) Fetch(ctx context.Context) (*source.Result, error) {
	r, err := s.fetch(ctx, s.newClient())
	if err != nil && status(err) == http.StatusUnauthorized && ctx.Err() == nil {
		r, err = s.fetch(ctx, s.newClient())
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (s *Source) fetch(ctx context.Context, c *imds.Client) (*source.Result, error) {
	t := Tree{}
	get := func(p string, required bool) error {
		out, err := c.GetMetadata(ctx, &imds.GetMetadataInput{Path: p})
		if err != nil {
			if status(err) == http.StatusNotFound && !required {
				return nil
			}
			return s.wrap("meta-data/"+p, err)
		}
		defer out.Content.Close()
		b, err := io.ReadAll(out.Content)
		if err != nil {
			return s.wrap("meta-data/"+p, err)
		}
		t[p] = string(b)
		return nil
	}
	if err := get("instance-id", true); err != nil {
		return nil, err
	}
	for _, p := range []string{"hostname", "local-hostname", "local-ipv4", "public-ipv4", "ipv6",
		"placement/availability-zone", "placement/region", "public-keys/", "network/interfaces/macs/"} {
		if err := get(p, false); err != nil {
			return nil, err
		}
	}
	for _, line := range lines(t["public-keys/"]) {
		idx := keyIndex(line)
		if err := get("public-keys/"+idx+"/openssh-key", false); err != nil {
			return nil, err
		}
	}
	for _, mac := range lines(t["network/interfaces/macs/"]) {
		mac = strings.TrimSuffix(mac, "/")
		for _, f := range macFields {
			if err := get("network/interfaces/macs/"+mac+"/"+f, false); err != nil {
				return nil, err
			}
		}
	}
	meta, netcfg, err := Parse(t)
	if err != nil {
		return nil, fmt.Errorf("ec2: %w", err)
	}
	r := &source.Result{Meta: meta, Network: netcfg}
	ud, err := c.GetUserData(ctx, &imds.GetUserDataInput{})
	switch {
	case err == nil:
		defer ud.Content.Close()
		b, err := io.ReadAll(ud.Content)
		if err != nil {
			return nil, s.wrap("user-data", err)
		}
		r.UserData = b
	case status(err) == http.StatusNotFound:
		// No user-data is a valid answer.
	default:
		return nil, s.wrap("user-data", err)
	}
	return r, nil
}

// wrap names the operation and maps the error onto the source sentinels.
func (s *Source) wrap(what string, err error) error {
	switch {
	case status(err) == http.StatusNotFound, source.Unreachable(err):
		return fmt.Errorf("ec2 %s %s: %w: %w", s.endpoint, what, source.ErrNotFound, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("ec2 %s %s: %w: %w", s.endpoint, what, source.ErrTimeout, err)
	}
	return fmt.Errorf("ec2 %s %s: %w", s.endpoint, what, err)
}

// backoff waits 100 ms, 200 ms, 400 ms ... up to 2 s between attempts;
// the SDK's default starts near a second, too slow for a boot.
type backoff struct{}

func (backoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	d := 100 * time.Millisecond << min(attempt-1, 5)
	return min(d, 2*time.Second), nil
}

func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
