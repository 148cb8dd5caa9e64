package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"
)

// Getter fetches small documents over HTTP with retries. The zero value is
// usable: http.DefaultClient, 100 ms first backoff capped at 2 s.
type Getter struct {
	Client *http.Client
	// Header is added to every request.
	Header http.Header
	// MinBackoff and MaxBackoff bound the wait between attempts.
	MinBackoff, MaxBackoff time.Duration
	// MaxBody caps a response body (default 16 MiB: user-data is at most 16 KiB
	// on EC2, but URL sources can be larger).
	MaxBody int64
}

// StatusError is a non-2xx answer that is not retried.
type StatusError struct {
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d", e.URL, e.Status)
}

// Get fetches url. A 404 returns an error wrapping ErrNotFound; an
// unreachable address (see Unreachable) also does.
// 5xx answers, connection resets and truncated bodies are retried with
// capped exponential backoff until ctx ends; then the last error is
// returned, wrapping ErrTimeout when the deadline was what stopped it.
func (g *Getter) Get(ctx context.Context, url string) ([]byte, error) {
	c := g.Client
	if c == nil {
		c = http.DefaultClient
	}
	backoff, maxBackoff := g.MinBackoff, g.MaxBackoff
	if backoff <= 0 {
		backoff = 100 * time.Millisecond
	}
	if maxBackoff <= 0 {
		maxBackoff = 2 * time.Second
	}
	limit := g.MaxBody
	if limit <= 0 {
		limit = 16 << 20
	}
	var last error
	for {
		body, retry, err := g.once(ctx, c, url, limit)
		if err == nil {
			return body, nil
		}
		if !retry {
			return nil, err
		}
		last = err
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("GET %s: %w (last error: %w)", url, ErrTimeout, last)
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (g *Getter) once(ctx context.Context, c *http.Client, url string, limit int64) (body []byte, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, fmt.Errorf("GET %s: %w", url, err)
	}
	for k, v := range g.Header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("GET %s: %w: %w", url, ErrTimeout, err)
		}
		if Unreachable(err) {
			return nil, false, fmt.Errorf("GET %s: %w: %w", url, ErrNotFound, err)
		}
		return nil, true, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, fmt.Errorf("GET %s: HTTP 404: %w", url, ErrNotFound)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, true, &StatusError{URL: url, Status: resp.StatusCode}
	case resp.StatusCode/100 != 2:
		return nil, false, &StatusError{URL: url, Status: resp.StatusCode}
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("GET %s: %w: %w", url, ErrTimeout, err)
		}
		// A body cut short (Content-Length not met) is retried.
		return nil, true, fmt.Errorf("GET %s: read body: %w", url, err)
	}
	return body, false, nil
}

// Unreachable reports a connection that nothing can answer: refused, or
// no route to the network or host. Sources treat it as "absent" at once
// instead of retrying until their deadline, because the runner starts
// after the network is up: a metadata service that cannot be reached then
// is not there, and waiting would only stall the boot.
func Unreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EHOSTUNREACH)
}

// Classify names what an error from Fetch means for the decision record:
// "absent", "timeout" or "error".
func Classify(err error) string {
	switch {
	case err == nil:
		return "used"
	case errors.Is(err, ErrNotFound):
		return "absent"
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	}
	return "error"
}
