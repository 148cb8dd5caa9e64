package sysinit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
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
		got[r.URL] = r
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
