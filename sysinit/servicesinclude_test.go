package sysinit

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/fake"
)

const servicesFile = "a: {image: berth/base:x}\nb: {image: berth/base:x, command: [true]}\n"

func TestFetchServicesFiles(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/services.yml":
			_, _ = w.Write([]byte(servicesFile))
		case "/error-page":
			_, _ = w.Write([]byte("<html><body>sign in to the portal</body></html>\n"))
		case "/list":
			_, _ = w.Write([]byte("- a\n- b\n"))
		case "/hang":
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	root := t.TempDir()
	good, errPage, list, hang := srv.URL+"/services.yml", srv.URL+"/error-page", srv.URL+"/list", srv.URL+"/hang"
	// An earlier boot kept a good copy for the URL that now answers with
	// an error page.
	kept := filepath.Join(root, cloudinit.ServicesFilePath(errPage))
	if err := os.MkdirAll(filepath.Dir(kept), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, []byte(servicesFile), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &cloudinit.Config{}
	cfg.Rancher.ServicesInclude = map[string]bool{good: true, errPage: true, list: true, hang: true, srv.URL + "/off.yml": false, "acpid": true}
	start := time.Now()
	got := map[string]ServicesFetch{}
	for _, r := range FetchServicesFiles(context.Background(), cfg, root, nil, 500*time.Millisecond) {
		got[r.Key] = r
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s: the hanging URL was not cut at its limit", took)
	}
	if len(got) != 4 {
		t.Errorf("fetched %d URLs, want the 4 set true: %v", len(got), got)
	}
	if r := got[good]; r.Err != nil || !r.Changed || r.Services != 2 {
		t.Errorf("%s: %+v; want fetched, changed, 2 services", good, r)
	}
	if b, err := os.ReadFile(filepath.Join(root, cloudinit.ServicesFilePath(good))); err != nil || string(b) != servicesFile {
		t.Errorf("kept file: %q, %v", b, err)
	}
	if r := got[errPage]; r.Err == nil || !r.Kept || r.Services != 2 {
		t.Errorf("%s: %+v; want an error, the earlier copy kept (2 services)", errPage, r)
	}
	if b, _ := os.ReadFile(kept); string(b) != servicesFile {
		t.Errorf("the error page replaced the kept copy: %q", b)
	}
	for _, u := range []string{list, hang} {
		if r := got[u]; r.Err == nil || r.Kept {
			t.Errorf("%s: %+v; want an error and nothing kept", u, r)
		}
		if _, err := os.Stat(filepath.Join(root, cloudinit.ServicesFilePath(u))); err == nil {
			t.Errorf("%s: a file was kept", u)
		}
	}
	cfg.Rancher.ServicesInclude = map[string]bool{good: true}
	if r := FetchServicesFiles(context.Background(), cfg, root, nil, time.Second); len(r) != 1 || r[0].Err != nil || r[0].Changed {
		t.Errorf("second fetch of the same file: %+v; want unchanged", r)
	}
}

func TestFetchServicesFilesThroughProxy(t *testing.T) {
	fp := &fake.Proxy{Host: "config.berth.test", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(servicesFile))
	})}
	proxySrv := httptest.NewServer(fp)
	defer proxySrv.Close()
	proxy := func(*http.Request) (*url.URL, error) { return url.Parse(proxySrv.URL) }
	cfg := &cloudinit.Config{}
	const u = "http://config.berth.test/services.yml" // resolves nowhere (RFC 6761)
	cfg.Rancher.ServicesInclude = map[string]bool{u: true}
	r := FetchServicesFiles(context.Background(), cfg, t.TempDir(), proxy, 5*time.Second)
	if asked := fp.Asked(); len(r) != 1 || r[0].Err != nil || !r[0].Changed || !slices.Equal(asked, []string{u}) {
		t.Errorf("through the proxy: %+v, proxy asked for %q", r, asked)
	}
}

// TestFetchServicesFromRepositories: a services_include name no source
// defines is looked up in rancher.repositories at URL/n/name.yml (the
// layout of RancherOS's os-services), in the repositories' names' order,
// the first that has it winning; a name fetched before is fetched again;
// a name a source defines, or that cannot be a file's name, is not.
func TestFetchServicesFromRepositories(t *testing.T) {
	files := map[string]string{
		"/one/b/both.yml":    "both: {image: berth/base:one}\n",
		"/two/b/both.yml":    "both: {image: berth/base:two}\n",
		"/two/k/k8s.yml":     "k8s: {image: berth/base:x}\nk8s-helper: {image: berth/base:x}\n",
		"/one/e/earlier.yml": "earlier: {image: berth/base:new}\n",
		"/one/e/error.yml":   "<html>sign in</html>\n",
	}
	var asked []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		if f, ok := files[r.URL.Path]; ok {
			_, _ = w.Write([]byte(f))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	root := t.TempDir()
	// An earlier boot fetched "earlier", so the config defines it now.
	kept := filepath.Join(root, cloudinit.ServicesFilePath("earlier"))
	if err := os.MkdirAll(filepath.Dir(kept), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kept, []byte("earlier: {image: berth/base:old}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &cloudinit.Config{}
	cfg.Rancher.Repositories = map[string]cloudinit.Repository{"b-two": {URL: srv.URL + "/two/"}, "a-one": {URL: srv.URL + "/one"}}
	cfg.Rancher.ServicesInclude = map[string]bool{"both": true, "k8s": true, "missing": true, "earlier": true, "error": true, "defined": true, "off": false, "../x": true}
	cfg.Rancher.Services = map[string]*cloudinit.Service{"defined": {}, "earlier": {}}
	got := map[string]ServicesFetch{}
	for _, r := range FetchServicesFiles(context.Background(), cfg, root, nil, 5*time.Second) {
		got[r.Key] = r
	}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"both", "earlier", "error", "k8s", "missing"}) {
		t.Errorf("fetched %q; want both, earlier, error, k8s, missing (not a defined service, one set false, or ../x)", keys)
	}
	for key, want := range map[string]struct {
		url      string
		services int
		file     string
	}{
		"both":    {srv.URL + "/one/b/both.yml", 1, files["/one/b/both.yml"]},
		"k8s":     {srv.URL + "/two/k/k8s.yml", 2, files["/two/k/k8s.yml"]},
		"earlier": {srv.URL + "/one/e/earlier.yml", 1, files["/one/e/earlier.yml"]},
	} {
		r := got[key]
		if r.Err != nil || !r.Changed || r.URL != want.url || r.Services != want.services {
			t.Errorf("%s: %+v; want fetched from %s, %d services", key, r, want.url, want.services)
		}
		if b, err := os.ReadFile(filepath.Join(root, cloudinit.ServicesFilePath(key))); err != nil || string(b) != want.file {
			t.Errorf("%s: kept %q, %v; want %q", key, b, err, want.file)
		}
	}
	if r := got["missing"]; r.Err == nil || !strings.HasPrefix(r.Err.Error(), "services_include missing: no repository of rancher.repositories has it (") ||
		!strings.Contains(r.Err.Error(), srv.URL+"/one/m/missing.yml") || !strings.Contains(r.Err.Error(), srv.URL+"/two/m/missing.yml") {
		t.Errorf("missing: %+v; want an error saying no repository has it, naming both URLs tried", r)
	}
	// error.yml is an error page in the first repository and missing in
	// the second: not "no repository has it", since one answered wrongly.
	if r := got["error"]; r.Err == nil || !strings.HasPrefix(r.Err.Error(), "services_include error: rancher.repositories could not be read (") ||
		!strings.Contains(r.Err.Error(), "not a services file") {
		t.Errorf("error: %+v; want the error page named", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(asked, "/two/b/both.yml") {
		t.Errorf("asked %q: the second repository was asked for a file the first had", asked)
	}
}
