package sysinit

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/source"
	"github.com/berthos/berth/netconf"
)

// RepositoryService is a service a repository's index lists.
type RepositoryService struct {
	Name string
	// Repository is the name (the rancher.repositories key) of the first
	// repository, in name order, whose index lists it: the one
	// services_include fetches it from.
	Repository string
}

// RepositoryIndex fetches the index of every rancher.repositories entry
// (URL/index.yml, as RancherOS's os-services keeps it: a map whose
// `services` is a list of names; its consoles and engines are not
// Berth's) at once, through proxy, within limit for them all, and lists
// the services they hold, sorted by name. A repository whose index cannot
// be fetched or read is an error of its own, naming it and the URL; the
// others are still listed.
func RepositoryIndex(ctx context.Context, repos map[string]cloudinit.Repository, proxy netconf.ProxyFunc, limit time.Duration) ([]RepositoryService, []error) {
	urls := cloudinit.RepositoryIndexURLs(repos)
	names := slices.Sorted(maps.Keys(urls))
	lists := make([][]string, len(names))
	errs := make([]error, len(names))
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	g := source.Getter{Client: netconf.ProxyClient(proxy), MaxBody: 1 << 20}
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			lists[i], errs[i] = fetchIndex(ctx, g, urls[n])
			if errs[i] != nil {
				errs[i] = fmt.Errorf("repository %s: %w", n, errs[i])
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	var out []RepositoryService
	for i, list := range lists {
		for _, s := range list {
			if !seen[s] && len(cloudinit.RepositoryURLs(repos, s)) > 0 {
				seen[s] = true
				out = append(out, RepositoryService{Name: s, Repository: names[i]})
			}
		}
	}
	slices.SortFunc(out, func(a, b RepositoryService) int { return strings.Compare(a.Name, b.Name) })
	return out, slices.DeleteFunc(errs, func(e error) bool { return e == nil })
}

// fetchIndex fetches one repository index and returns its services.
func fetchIndex(ctx context.Context, g source.Getter, url string) ([]string, error) {
	data, err := g.Get(ctx, url) // its errors name url
	if err != nil {
		return nil, err
	}
	var idx struct {
		Services []string `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: not a repository index (a map with a list of service names under services): %w", url, err)
	}
	return idx.Services, nil
}
