package fake

import (
	"net/http"
	"slices"
	"sync"
)

// Proxy is a forward HTTP proxy that knows one host: a request for Host
// (in the absolute form a client sends a proxy) goes to Handler, any
// other is refused with 502. Pick a name that resolves nowhere
// (RFC 6761's .test), so that only a fetch through the proxy answers.
type Proxy struct {
	Host    string
	Handler http.Handler

	mu    sync.Mutex
	asked []string
}

// ServeHTTP records the request's URI and answers it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.asked = append(p.asked, r.RequestURI)
	p.mu.Unlock()
	if r.URL.Host != p.Host {
		http.Error(w, "this proxy knows "+p.Host+" only", http.StatusBadGateway)
		return
	}
	p.Handler.ServeHTTP(w, r)
}

// Asked is every request URI the proxy was sent, in order.
func (p *Proxy) Asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}
