package sysinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/source"
	"github.com/berthos/berth/internal/atomicfile"
	"github.com/berthos/berth/netconf"
)

// ServicesFetch is what fetching one services_include key did.
type ServicesFetch struct {
	// Key is the services_include key: a URL, or a service's name looked
	// up in rancher.repositories.
	Key string
	// URL is where the file came from: Key itself for a URL, the
	// repository's URL that had it for a name (empty when none had).
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
// key cfg sets true into root's cloudinit.ServicesIncludeDir, all at
// once, through proxy (nil: direct), each within limit. A URL key is
// fetched from itself (RancherOS's test_19: a URL of a map of service
// name to service). A name no source defines (RancherOS's
// kernel-headers), or one fetched before, is looked up in
// rancher.repositories in their names' order (cloudinit.RepositoryURLs),
// and the first that has it wins, as RancherOS did. A file is kept only
// when it is a map of services, so an error page or a broken file never
// replaces the copy an earlier boot fetched; that copy stays in use.
func FetchServicesFiles(ctx context.Context, cfg *cloudinit.Config, root string, proxy netconf.ProxyFunc, limit time.Duration) []ServicesFetch {
	type fetch struct {
		key  string
		urls []string
	}
	var todo []fetch
	for _, u := range cloudinit.ServicesURLs(cfg.Rancher.ServicesInclude) {
		todo = append(todo, fetch{u, []string{u}})
	}
	for _, n := range repositoryIncludes(cfg, root) {
		todo = append(todo, fetch{n, cloudinit.RepositoryURLs(cfg.Rancher.Repositories, n)})
	}
	out := make([]ServicesFetch, len(todo))
	g := source.Getter{Client: netconf.ProxyClient(proxy), MaxBody: 1 << 20}
	var wg sync.WaitGroup
	for i, f := range todo {
		wg.Go(func() {
			out[i] = fetchServicesFile(ctx, g, root, f.key, f.urls, limit)
		})
	}
	wg.Wait()
	return out
}

// repositoryIncludes are the names cfg's services_include sets true that
// rancher.repositories is asked for: those no source defines a service
// for, and those whose file an earlier fetch kept (so a repository's
// newer file replaces it), sorted. None without a repository.
func repositoryIncludes(cfg *cloudinit.Config, root string) []string {
	var out []string
	for name, on := range cfg.Rancher.ServicesInclude {
		if !on || len(cloudinit.RepositoryURLs(cfg.Rancher.Repositories, name)) == 0 {
			continue
		}
		_, err := os.Stat(filepath.Join(root, cloudinit.ServicesFilePath(name)))
		if cfg.Rancher.Services[name] == nil || err == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// fetchServicesFile fetches key's services file from the first of urls
// that answers with one, within limit for them all, and keeps it.
func fetchServicesFile(ctx context.Context, g source.Getter, root, key string, urls []string, limit time.Duration) ServicesFetch {
	r := ServicesFetch{Key: key}
	isURL := cloudinit.IsServicesURL(key)
	if isURL {
		r.URL = key
	}
	dst := filepath.Join(root, cloudinit.ServicesFilePath(key))
	old, oerr := os.ReadFile(dst)
	if oerr == nil {
		r.Services, _ = countServices(old)
	}
	fail := func(err error) ServicesFetch {
		r.Err = fmt.Errorf("services_include %s: %w", key, err)
		r.Kept = oerr == nil
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var data []byte
	var n int
	var misses []string
	answered := false // a repository answered with something other than 404
	for _, u := range urls {
		d, err := g.Get(ctx, u) // its errors name u
		if err == nil {
			if n, err = countServices(d); err != nil {
				err = fmt.Errorf("%s: %w", u, err)
			}
		}
		if err == nil {
			data, r.URL = d, u
			break
		}
		if isURL {
			return fail(err)
		}
		misses = append(misses, err.Error())
		answered = answered || !errors.Is(err, source.ErrNotFound)
	}
	if data == nil {
		if answered {
			return fail(fmt.Errorf("rancher.repositories could not be read (%s)", strings.Join(misses, "; ")))
		}
		return fail(fmt.Errorf("no repository of rancher.repositories has it (%s)", strings.Join(misses, "; ")))
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

// from says where a name's services file came from (nothing for a URL).
func from(r ServicesFetch) string {
	if r.URL == r.Key {
		return ""
	}
	return " from " + r.URL
}

// servicesFetchLimit bounds each services_include key's fetch at boot: a
// URL or repository that does not answer costs the boot this much at most, and the
// copy of an earlier boot is used.
const servicesFetchLimit = 10 * time.Second

// servicesInclude is the boot phase that fetches the services files of
// the config's services_include URLs and repository names, once the
// network is up.
func (b *pid1Boot) servicesInclude(ctx context.Context) error {
	if cfg, ok := b.fetchServicesFiles(ctx, b.cfg); ok {
		b.cfg = cfg
	}
	return nil
}

// fetchServicesFiles fetches cfg's services_include files (rancher.network's
// proxies apply), logs what each did, and returns the config loaded again
// when a kept file changed (ok false: cfg stands).
func (b *pid1Boot) fetchServicesFiles(ctx context.Context, cfg *cloudinit.Config) (*cloudinit.Config, bool) {
	if len(cloudinit.ServicesURLs(cfg.Rancher.ServicesInclude)) == 0 && len(repositoryIncludes(cfg, "/")) == 0 {
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
			b.log.Printf("services_include %s: fetched%s, %d services", r.Key, from(r), r.Services)
		default:
			b.log.Printf("services_include %s: unchanged%s, %d services", r.Key, from(r), r.Services)
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
