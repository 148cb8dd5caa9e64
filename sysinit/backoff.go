package sysinit

import "time"

// backoff is crash-loop backoff: the first restart is immediate, then
// first, 2*first, ... up to limit; a run that lasted reset or longer starts
// the sequence over.
type backoff struct {
	first, limit, reset time.Duration
	n                   int
}

func newBackoff(first, limit, reset time.Duration) *backoff {
	return &backoff{first: first, limit: limit, reset: reset}
}

// next returns the delay before the next start, given how long the last
// run stayed up.
func (b *backoff) next(uptime time.Duration) time.Duration {
	if uptime >= b.reset {
		b.n = 0
	}
	n := b.n
	b.n++
	if n == 0 {
		return 0
	}
	d := b.first
	for i := 1; i < n && d < b.limit; i++ {
		d *= 2
	}
	return min(d, b.limit)
}
