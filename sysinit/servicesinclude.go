package sysinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/source"
	"github.com/berthos/berth/internal/atomicfile"
	"github.com/berthos/berth/netconf"
)

// ServicesFetch is what fetching one services_include URL did.
type ServicesFetch struct {
	URL string
	// Services is how many services the kept file defines (the fetched
	// one, or after an error the one an earlier fetch kept).
	Services int
	// Changed is true when the fetched file differs from the kept one.
	Changed bool
	// Kept is true when, after an error, an earlier fetch's file is
	// still there and used.
	Kept bool
	Err  error
}

// FetchServicesFiles fetches the services file of each services_include
// URL cfg sets true (RancherOS's test_19: a URL of a map of service name
// to service) into root's cloudinit.ServicesIncludeDir, all at once,
// through proxy (nil: direct), each within limit. A file is kept only
// when it is a map of services, so an error page or a broken file never
// replaces the copy an earlier boot fetched; that copy stays in use.
func FetchServicesFiles(ctx context.Context, cfg *cloudinit.Config, root string, proxy netconf.ProxyFunc, limit time.Duration) []ServicesFetch {
	urls := cloudinit.ServicesURLs(cfg.Rancher.ServicesInclude)
	out := make([]ServicesFetch, len(urls))
	g := source.Getter{Client: netconf.ProxyClient(proxy), MaxBody: 1 << 20}
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			out[i] = fetchServicesFile(ctx, g, root, u, limit)
		})
	}
	wg.Wait()
	return out
}

func fetchServicesFile(ctx context.Context, g source.Getter, root, u string, limit time.Duration) ServicesFetch {
	r := ServicesFetch{URL: u}
	dst := filepath.Join(root, cloudinit.ServicesFilePath(u))
	old, oerr := os.ReadFile(dst)
	if oerr == nil {
		r.Services, _ = countServices(old)
	}
	fail := func(err error) ServicesFetch {
		r.Err = fmt.Errorf("services_include %s: %w", u, err)
		r.Kept = oerr == nil
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	data, err := g.Get(ctx, u)
	if err != nil {
		return fail(err)
	}
	n, err := countServices(data)
	if err != nil {
		return fail(err)
	}
	if oerr == nil && bytes.Equal(old, data) {
		return r
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail(err)
	}
	if err := atomicfile.Write(dst, data, 0o644); err != nil {
		return fail(err)
	}
	r.Services, r.Changed = n, true
	return r
}

// countServices checks that data is a services file, a map of service
// name to service map, and says how many it defines.
func countServices(data []byte) (int, error) {
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return 0, fmt.Errorf("not a services file (a map of service name to service): %w", err)
	}
	if len(m) == 0 {
		return 0, errors.New("not a services file: it defines no service")
	}
	for name, v := range m {
		if _, ok := v.(map[string]any); !ok {
			return 0, fmt.Errorf("not a services file: %s is not a service (a map)", name)
		}
	}
	return len(m), nil
}

// servicesFetchLimit bounds each services_include URL's fetch at boot: a
// URL that does not answer costs the boot this much at most, and the
// copy of an earlier boot is used.
const servicesFetchLimit = 10 * time.Second

// servicesInclude is the boot phase that fetches the services files of
// the config's services_include URLs, once the network is up.
func (b *pid1Boot) servicesInclude(ctx context.Context) error {
	if cfg, ok := b.fetchServicesFiles(ctx, b.cfg); ok {
		b.cfg = cfg
	}
	return nil
}

// fetchServicesFiles fetches cfg's services_include URLs (rancher.network's
// proxies apply), logs what each did, and returns the config loaded again
// when a kept file changed (ok false: cfg stands).
func (b *pid1Boot) fetchServicesFiles(ctx context.Context, cfg *cloudinit.Config) (*cloudinit.Config, bool) {
	if len(cloudinit.ServicesURLs(cfg.Rancher.ServicesInclude)) == 0 {
		return nil, false
	}
	proxy, err := cfg.Rancher.Network.Proxy()
	if err != nil {
		b.log.Printf("services_include: %v; fetching direct", err)
	}
	changed := false
	for _, r := range FetchServicesFiles(ctx, cfg, "/", proxy, servicesFetchLimit) {
		switch {
		case r.Err != nil && r.Kept:
			b.log.Printf("%v; using the copy fetched before (%d services)", r.Err, r.Services)
		case r.Err != nil:
			b.log.Printf("%v; no copy fetched before, so its services are left out", r.Err)
		case r.Changed:
			changed = true
			b.log.Printf("services_include %s: fetched, %d services", r.URL, r.Services)
		default:
			b.log.Printf("services_include %s: unchanged, %d services", r.URL, r.Services)
		}
	}
	if !changed {
		return nil, false
	}
	next, err := b.readConfig()
	if err != nil {
		b.log.Printf("services_include: load config: %v; this boot keeps the config it had", err)
		return nil, false
	}
	return next, true
}
