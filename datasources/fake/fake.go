// Package fake serves fake metadata services (EC2 with IMDSv2 tokens, GCE,
// OpenStack) with fault injection, for unit tests and for the qemu e2e
// tests (through the fakemeta command), and builds config-drive images.
package fake

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults are injected into every answer of a fake.
type Faults struct {
	// Delay is added before every answer.
	Delay time.Duration
	// Fail5xx makes the first N requests answer 500.
	Fail5xx int
	// Hang makes every request wait until the client gives up.
	Hang bool
	// Truncate sends half of each body under a full Content-Length.
	Truncate bool
	// Paths limits the faults to paths with one of these prefixes (all
	// paths when empty).
	Paths []string
}

// faulter applies Faults; it counts requests, so it is per server.
type faulter struct {
	mu     sync.Mutex
	f      Faults
	failed int
	hits   map[string]int
}

func (fl *faulter) applies(p string) bool {
	if len(fl.f.Paths) == 0 {
		return true
	}
	for _, pre := range fl.f.Paths {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// before runs the faults that come before an answer; false means the
// request was already answered (500) or abandoned (hang).
func (fl *faulter) before(w http.ResponseWriter, r *http.Request) bool {
	fl.mu.Lock()
	if fl.hits == nil {
		fl.hits = map[string]int{}
	}
	fl.hits[r.URL.Path]++
	f := fl.f
	on := fl.applies(r.URL.Path)
	fail := on && fl.failed < f.Fail5xx
	if fail {
		fl.failed++
	}
	fl.mu.Unlock()
	if !on {
		return true
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return false
		}
	}
	if f.Hang {
		<-r.Context().Done()
		return false
	}
	if fail {
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return false
	}
	return true
}

// write sends body, or half of it under a full Content-Length when
// truncating.
func (fl *faulter) write(w http.ResponseWriter, r *http.Request, body []byte) {
	fl.mu.Lock()
	trunc := fl.f.Truncate && fl.applies(r.URL.Path)
	fl.mu.Unlock()
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if trunc && len(body) > 1 {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		// Abort the connection so the client sees a short body.
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(body)
}

// Hits reports how many requests each path got.
func (fl *faulter) Hits(p string) int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.hits[p]
}

// SetFaults replaces the faults (and restarts the 5xx count).
func (fl *faulter) SetFaults(f Faults) {
	fl.mu.Lock()
	fl.f, fl.failed = f, 0
	fl.mu.Unlock()
}

// tree serves a flat map of paths as EC2-style directories: a path that is
// a prefix of others lists its children, directories with a trailing "/".
type tree map[string]string

func (t tree) lookup(p string) (string, bool) {
	if v, ok := t[p]; ok && !strings.HasSuffix(p, "/") {
		return v, true
	}
	dir := strings.TrimSuffix(p, "/") + "/"
	if dir == "/" {
		dir = ""
	}
	seen := map[string]bool{}
	for k := range t {
		if !strings.HasPrefix(k, dir) {
			continue
		}
		rest := k[len(dir):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i+1]
		}
		if rest != "" {
			seen[rest] = true
		}
	}
	if len(seen) == 0 {
		return "", false
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "\n"), true
}
