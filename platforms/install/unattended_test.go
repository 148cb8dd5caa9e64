package install

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUnattended(t *testing.T) {
	tests := []struct {
		cmdline string
		want    Unattended
		ok      bool
	}{
		{"console=ttyS0 panic=10", Unattended{Platform: Generic}, false},
		{"rancher.install.device=/dev/vda", Unattended{Device: "/dev/vda", Platform: Generic}, true},
		{`rancher.install.device=/dev/vda rancher.install.cloud_config_url=http://192.0.2.1/cc.yml rancher.install.type=openstack rancher.install.append="rancher.debug console=ttyS1" rancher.install.force`,
			Unattended{Device: "/dev/vda", CloudConfigURL: "http://192.0.2.1/cc.yml", Platform: OpenStack, Append: "rancher.debug console=ttyS1", Force: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.cmdline, func(t *testing.T) {
			got, ok, err := ParseUnattended(tt.cmdline)
			if err != nil || ok != tt.ok {
				t.Fatalf("ParseUnattended = %v, %v; want ok %v", ok, err, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, _, err := ParseUnattended("rancher.install.device=/dev/vda rancher.install.type=azure"); err == nil {
		t.Error("unknown rancher.install.type: no error")
	}
}

func TestFetchCloudConfig(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cc.yml" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("#cloud-config\nhostname: fetched\n"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	dst := filepath.Join(dir, "cc.yml")
	if err := FetchCloudConfig(context.Background(), srv.URL+"/cc.yml", dst, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "#cloud-config\nhostname: fetched\n" {
		t.Errorf("fetched %q", got)
	}
	if err := FetchCloudConfig(context.Background(), srv.URL+"/missing", dst, nil); err == nil {
		t.Error("404: no error")
	}
	if err := FetchCloudConfig(context.Background(), "file://"+dst, filepath.Join(dir, "copy"), nil); err != nil {
		t.Errorf("file URL: %v", err)
	}
	if err := FetchCloudConfig(context.Background(), "ftp://192.0.2.1/x", dst, nil); err == nil {
		t.Error("ftp: no error")
	}
	// Through a proxy: srv answers any absolute URL, and the name
	// (RFC 6761's .test) resolves nowhere else.
	proxy := func(*http.Request) (*url.URL, error) { return url.Parse(srv.URL) }
	viaProxy := filepath.Join(dir, "via-proxy")
	if err := FetchCloudConfig(context.Background(), "http://config.berth.test/cc.yml", viaProxy, proxy); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	if got, _ := os.ReadFile(viaProxy); string(got) != "#cloud-config\nhostname: fetched\n" {
		t.Errorf("fetched through the proxy %q", got)
	}
}

func FuzzParseUnattended(f *testing.F) {
	f.Add("rancher.install.device=/dev/vda", "console=ttyS0")
	f.Add(`rancher.install.append="a b" rancher.install.force`, "rancher.install.type=gce")
	f.Fuzz(func(t *testing.T, dev, rest string) {
		u, ok, err := ParseUnattended(rest + " rancher.install.device=" + dev)
		if err != nil {
			return
		}
		if strings.ContainsAny(dev+rest, "\" \t\n") || dev == "" {
			return
		}
		if !ok || u.Device != dev {
			t.Errorf("device %q parsed as %q (ok %v)", dev, u.Device, ok)
		}
	})
}
