// Package timesync owns keeping the system clock in step with NTP servers:
// it queries the servers, drops answers unfit for synchronisation, picks
// the best of the rest and steps or slews the clock by its offset, once
// (Sync) or at a poll interval that backs off while the clock is stable
// (Run).
package timesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/beevik/ntp"
)

// Defaults of a Client.
const (
	// DefaultServer is used when a Client is given no server.
	DefaultServer = "pool.ntp.org"
	// StepThreshold is the offset above which the clock is stepped rather
	// than slewed (ntpd's default). Below it a slew is quick enough and no
	// program sees time jump.
	StepThreshold = 128 * time.Millisecond
	// DefaultTimeout bounds one server's query.
	DefaultTimeout = 5 * time.Second
	// DefaultMinPoll and DefaultMaxPoll bound the interval between rounds.
	DefaultMinPoll = 64 * time.Second
	DefaultMaxPoll = 1024 * time.Second
)

// Result is one successful round: the answer used and what was done.
type Result struct {
	Server string
	// Offset is how far the local clock was behind the server's (negative:
	// ahead); it is what the clock was moved by.
	Offset       time.Duration
	RTT          time.Duration
	Stratum      uint8
	RootDistance time.Duration
	// Stepped is true when the clock was set at once, false when slewed.
	Stepped bool
	// Skipped are the servers whose answers were not used, with why.
	Skipped []*ServerError
}

// ServerError is why one server's answer was not used in a round.
type ServerError struct {
	Server string
	Err    error
}

func (e *ServerError) Error() string { return e.Server + ": " + e.Err.Error() }
func (e *ServerError) Unwrap() error { return e.Err }

// NoServerError is a round in which no server gave a usable answer.
type NoServerError struct {
	Errors []*ServerError
}

func (e *NoServerError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, se := range e.Errors {
		msgs[i] = se.Error()
	}
	return "no usable answer from any server: " + strings.Join(msgs, "; ")
}

func (e *NoServerError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, se := range e.Errors {
		errs[i] = se
	}
	return errs
}

// Client synchronises a Clock with a list of NTP servers.
type Client struct {
	servers          []string
	clock            Clock
	log              *slog.Logger
	timeout          time.Duration
	minPoll, maxPoll time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithClock sets the clock that is stepped and slewed (default SystemClock).
func WithClock(c Clock) Option { return func(cl *Client) { cl.clock = c } }

// WithLogger sets where each round's outcome is logged (default: nowhere).
func WithLogger(l *slog.Logger) Option { return func(cl *Client) { cl.log = l } }

// WithTimeout bounds each server's query, name lookup included
// (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(cl *Client) { cl.timeout = d } }

// WithPoll sets the shortest and longest interval between rounds in Run
// (default DefaultMinPoll and DefaultMaxPoll).
func WithPoll(minPoll, maxPoll time.Duration) Option {
	return func(cl *Client) { cl.minPoll, cl.maxPoll = minPoll, maxPoll }
}

// New returns a Client for servers ("host" or "host:port"; DefaultServer
// when none is given).
func New(servers []string, opts ...Option) *Client {
	if len(servers) == 0 {
		servers = []string{DefaultServer}
	}
	c := &Client{
		servers: servers,
		clock:   SystemClock{},
		log:     slog.New(slog.DiscardHandler),
		timeout: DefaultTimeout,
		minPoll: DefaultMinPoll,
		maxPoll: DefaultMaxPoll,
	}
	for _, o := range opts {
		o(c)
	}
	c.maxPoll = max(c.maxPoll, c.minPoll)
	return c
}

// Sync runs one round: it queries every server at once, drops answers
// that fail ntp.Response.Validate (kiss-o'-death, stratum 0 or 16,
// unsynchronised, stale or too dispersed), takes the one with the lowest
// root distance (the bound on its error) and moves the clock by its
// offset: a step above StepThreshold, a slew otherwise.
func (c *Client) Sync(ctx context.Context) (Result, error) {
	type answer struct {
		i   int
		res Result
		err error
	}
	answers := make(chan answer, len(c.servers)) // buffered: late answers after ctx is done do not block
	for i, s := range c.servers {
		go func() {
			res, err := c.query(ctx, s)
			answers <- answer{i, res, err}
		}()
	}
	got := make([]answer, len(c.servers))
	for range c.servers {
		select {
		case a := <-answers:
			got[a.i] = a
		case <-ctx.Done():
			return Result{}, fmt.Errorf("ntp sync: %w", ctx.Err())
		}
	}

	var (
		best    *Result
		skipped []*ServerError
	)
	for _, a := range got {
		if a.err != nil {
			skipped = append(skipped, &ServerError{Server: c.servers[a.i], Err: a.err})
			continue
		}
		if best == nil || a.res.RootDistance < best.RootDistance {
			best = &a.res
		}
	}
	if best == nil {
		return Result{Skipped: skipped}, fmt.Errorf("ntp sync: %w", &NoServerError{Errors: skipped})
	}
	res := *best
	res.Skipped = skipped
	for _, se := range skipped {
		c.log.Warn("ntp server skipped", "server", se.Server, "err", se.Err)
	}

	msg := "clock slewed"
	if res.Offset > StepThreshold || res.Offset < -StepThreshold {
		res.Stepped = true
		msg = "clock stepped"
		if err := c.clock.Step(res.Offset); err != nil {
			return res, fmt.Errorf("ntp sync with %s: %w", res.Server, err)
		}
	} else if err := c.clock.Slew(res.Offset); err != nil {
		return res, fmt.Errorf("ntp sync with %s: %w", res.Server, err)
	}
	c.log.Info(msg, "server", res.Server, "offset", res.Offset, "rtt", res.RTT, "stratum", res.Stratum, "root_distance", res.RootDistance)
	return res, nil
}

// query asks one server and returns its answer if it is fit to set a
// clock by.
func (c *Client) query(ctx context.Context, server string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := ntp.QueryWithOptions(server, ntp.QueryOptions{
		Timeout: c.timeout,
		// The library's own dialer resolves the name without a deadline.
		Dialer: func(_, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", addr)
		},
	})
	if err != nil {
		return Result{}, fmt.Errorf("query: %w", err)
	}
	if err := r.Validate(); err != nil {
		if errors.Is(err, ntp.ErrKissOfDeath) && r.KissCode != "" {
			return Result{}, fmt.Errorf("unusable answer (stratum %d, kiss code %s): %w", r.Stratum, r.KissCode, err)
		}
		return Result{}, fmt.Errorf("unusable answer (stratum %d): %w", r.Stratum, err)
	}
	return Result{
		Server:       server,
		Offset:       r.ClockOffset,
		RTT:          r.RTT,
		Stratum:      r.Stratum,
		RootDistance: r.RootDistance,
	}, nil
}

// Run syncs until ctx is done. It never gives up: a round in which no
// server answers (or the clock cannot be set) is logged with every
// server's error and retried after the shortest interval, so a
// supervisor never sees it exit for a network that is not up yet.
func (c *Client) Run(ctx context.Context) {
	c.log.Info("time sync started", "servers", c.servers, "min_poll", c.minPoll, "max_poll", c.maxPoll)
	poll := c.minPoll
	for {
		res, err := c.Sync(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		wait, poll = c.schedule(poll, err == nil && !res.Stepped)
		if err != nil {
			c.log.Error("time sync failed", "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// schedule returns how long to wait before the next round and the poll
// interval after that. A round that slewed (the clock is stable) waits
// poll and doubles it up to maxPoll; a failure or a step (the clock was
// far off, check soon) goes back to minPoll.
func (c *Client) schedule(poll time.Duration, stable bool) (wait, next time.Duration) {
	if !stable {
		return c.minPoll, c.minPoll
	}
	return poll, min(2*poll, c.maxPoll)
}
