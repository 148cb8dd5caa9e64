package install

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRequestNeedsNetwork(t *testing.T) {
	for cc, want := range map[string]bool{
		"":                         false,
		"cc.yml":                   false,
		"/tmp/cc.yml":              false,
		"file:///tmp/cc.yml":       false,
		"http://192.0.2.1/cc.yml":  true,
		"https://192.0.2.1/cc.yml": true,
	} {
		if got := (Request{CloudConfig: cc}).NeedsNetwork(); got != want {
			t.Errorf("Request{CloudConfig: %q}.NeedsNetwork() = %v, want %v", cc, got, want)
		}
	}
}

func TestUnattendedRequest(t *testing.T) {
	u, _, _ := ParseUnattended("rancher.install.device=/dev/vda rancher.install.cloud_config_url=http://192.0.2.1/cc.yml rancher.install.type=amazon rancher.install.append=rancher.debug rancher.install.force")
	want := Request{Device: "/dev/vda", Platform: Amazon, Append: "rancher.debug", CloudConfig: "http://192.0.2.1/cc.yml", Force: true, Root: "/r"}
	if got := u.Request("/r"); got.Device != want.Device || got.Platform != want.Platform || got.Append != want.Append ||
		got.CloudConfig != want.CloudConfig || got.Force != want.Force || got.Root != want.Root {
		t.Errorf("Request = %+v, want %+v", got, want)
	}
}

// TestRun is the path every install takes: a fetched cloud-config, the
// kernel found under the root, the plan printed, a refusal without force
// and a confirm that says no leaving the device as it was.
func TestRun(t *testing.T) {
	needTools(t, installTools...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "#cloud-config\nhostname: from-url\n")
	}))
	defer srv.Close()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	writeFile(t, root, "boot/vmlinuz", "kernel bytes")
	writeFile(t, root, "boot/initrd", "initrd bytes")
	img := sparse(t, root, "disk.img", diskSize)
	req := Request{Device: img, Platform: OpenStack, CloudConfig: srv.URL + "/cc.yml", Root: root, CDROMs: []string{filepath.Join(root, "no-cd")}}

	var out, progress strings.Builder
	if err := Run(context.Background(), req, &out, &progress, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(out.String(), "Install Berth (openstack) to "+img) || !strings.Contains(out.String(), "Kernel: "+filepath.Join(root, "boot/vmlinuz")) {
		t.Errorf("plan:\n%s", out.String())
	}
	if !strings.Contains(progress.String(), "install: done") {
		t.Errorf("progress:\n%s", progress.String())
	}
	p, err := NewPlan(img, diskSize, WithKernel("k"), WithInitrd("i"))
	if err != nil {
		t.Fatal(err)
	}
	if got := debugfsCat(t, img, p, "/"+CloudConfigPath); got != "#cloud-config\nhostname: from-url\n" {
		t.Errorf("cloud-config on the disk = %q", got)
	}

	if err := Run(context.Background(), req, io.Discard, io.Discard, nil); !errors.Is(err, ErrRefused) {
		t.Errorf("Run over an installed disk without Force = %v, want ErrRefused", err)
	}

	blank := sparse(t, root, "blank.img", diskSize)
	req.Device = blank
	no := errors.New("no")
	if err := Run(context.Background(), req, io.Discard, io.Discard, func(*Plan) error { return no }); err != no {
		t.Errorf("Run with a confirm that says no = %v, want its error", err)
	}
	f, _ := os.Open(blank)
	defer f.Close()
	if what := Identify(f); what != "" {
		t.Errorf("after a refused confirm the device holds %s", what)
	}

	req.CloudConfig = srv.URL + "/cc.yml\x00"
	if err := Run(context.Background(), req, io.Discard, io.Discard, nil); err == nil {
		t.Error("Run with a bad cloud-config URL: no error")
	}
}
