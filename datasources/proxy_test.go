package datasources

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

	"github.com/berthos/berth/datasources/fake"
	"github.com/berthos/berth/netconf"
)

// TestURLSourcesUseTheProxy: cmdline's cloud-config-url and url: go
// through rancher.network's proxy, and only where no_proxy lets them.
func TestURLSourcesUseTheProxy(t *testing.T) {
	fp := &fake.Proxy{Host: "config.berth.test", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("#cloud-config\nhostname: via-" + r.URL.Path[1:] + "\n"))
	})}
	proxySrv := httptest.NewServer(fp)
	defer proxySrv.Close()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte("console=ttyS0 cloud-config-url=http://config.berth.test/cmdline\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proxy, err := netconf.Config{HTTPProxy: proxySrv.URL, NoProxy: "direct.berth.test"}.Proxy()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, list := range [][]string{{"cmdline"}, {"url:http://config.berth.test/url"}} {
		d, err := Run(ctx, list, WithRoot(root), WithPlatform(Platform{}), WithProxy(proxy))
		if err != nil {
			t.Fatalf("%v: %v", list, err)
		}
		if d.Chosen != list[0] {
			t.Errorf("%v: chosen %q, want %q (through the proxy): %+v", list, d.Chosen, list[0], d.Sources)
		}
	}
	// no_proxy: direct, and the name does not resolve.
	srcs, err := Sources([]string{"url:http://direct.berth.test/x"}, WithProxy(proxy))
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	if _, err := srcs[0].Fetch(dctx); err == nil {
		t.Error("url:http://direct.berth.test/x answered; no_proxy names it, so it must go direct and fail")
	}
	want := []string{"http://config.berth.test/cmdline", "http://config.berth.test/url"}
	if got := fp.Asked(); !slices.Equal(got, want) {
		t.Errorf("the proxy saw %q, want %q", got, want)
	}
}

// TestURLClientKeepsTheClient: WithProxy changes only the proxy of the
// client WithHTTPClient gave.
func TestURLClientKeepsTheClient(t *testing.T) {
	base := &http.Client{Timeout: 7 * time.Second}
	p := func(*http.Request) (*url.URL, error) { return url.Parse("http://192.0.2.3:3128") }
	c := newConfig([]Option{WithHTTPClient(base), WithProxy(p)})
	hc := c.urlClient()
	if hc == base || hc.Timeout != 7*time.Second {
		t.Fatalf("urlClient() = %+v; want a copy of the given client with its timeout", hc)
	}
	tr, ok := hc.Transport.(*http.Transport)
	if !ok || tr.Proxy == nil {
		t.Fatalf("urlClient's transport %T has no proxy", hc.Transport)
	}
	if base.Transport != nil {
		t.Error("the given client's transport was changed")
	}
	if c := newConfig([]Option{WithHTTPClient(base)}); c.urlClient() != base {
		t.Error("without WithProxy, urlClient is not the given client")
	}
}
