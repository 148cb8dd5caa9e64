package cloudinit

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLoadServicesFiles: the kept services file of a services_include URL
// set true adds its services (RancherOS's test_19), with its own lines in
// reports; rancher.services still changes them; a URL set false, or not
// fetched yet, adds nothing; a broken file is skipped whole.
func TestLoadServicesFiles(t *testing.T) {
	root := t.TempDir()
	const (
		on     = "http://config.berth.test/services.yml"
		off    = "http://config.berth.test/off.yml"
		broken = "https://config.berth.test/broken.yml"
		later  = "http://config.berth.test/not-fetched.yml"
	)
	write := func(p, data string) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(LocalConfigPath, `rancher:
  services_include:
    "`+on+`": true
    "`+off+`": false
    "`+broken+`": true
    "`+later+`": true
    acpid: true
    k8s: true
  services:
    included-b:
      environment: [FROM=user]
`)
	write(ServicesFilePath(on), `included-a:
  image: berth/base:${VERSION}
  command: [sh, -c, "echo a"]
  labels:
    io.rancher.os.detach: "false"
included-b:
  image: berth/base:${VERSION}
  environment: [FROM=file]
  labels: {io.rancher.os.scope: system}
bad:
  image: [not, a, string]
`)
	write(ServicesFilePath(off), "off-svc: {image: berth/base:x}\n")
	// A name's file, fetched from a repository.
	write(ServicesFilePath("k8s"), "k8s:\n  image: berth/base:x\n  privileged: maybe\n")
	write(ServicesFilePath(broken), "broken-svc: {image: [\n")

	cfg, rep, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Rancher.Services["included-a"], cfg.Rancher.Services["included-b"]
	if a == nil || b == nil {
		t.Fatalf("services %v: want included-a and included-b from %s", slices.Sorted(maps.Keys(cfg.Rancher.Services)), on)
	}
	if diff := cmp.Diff([]string{"sh", "-c", "echo a"}, a.Command); diff != "" {
		t.Errorf("included-a command (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"FROM=user"}, b.Environment); diff != "" {
		t.Errorf("included-b environment: rancher.services must win (-want +got):\n%s", diff)
	}
	if b.Labels["io.rancher.os.scope"] != "system" || b.Image != "berth/base:${VERSION}" {
		t.Errorf("included-b lost the file's keys: %+v", b)
	}
	for _, n := range []string{"off-svc", "broken-svc"} {
		if cfg.Rancher.Services[n] != nil {
			t.Errorf("service %s is in the config", n)
		}
	}
	if cfg.Rancher.Services["console"] == nil {
		t.Error("the built-in services are gone")
	}
	if cfg.Rancher.Services["k8s"] == nil {
		t.Error("the services file of the name k8s, fetched from a repository, adds nothing")
	}
	var sawBad, sawBroken, sawName bool
	for _, e := range rep.Entries {
		switch {
		case e.Source == on && e.Path == "rancher.services.bad.image" && e.Line == 11 && e.Error:
			sawBad = true
		case e.Source == broken && e.Error && strings.HasPrefix(e.Message, "file skipped"):
			sawBroken = true
		case e.Source == "k/k8s.yml" && e.Path == "rancher.services.k8s.privileged" && e.Line == 3:
			sawName = true
		case e.Source == later:
			t.Errorf("a URL not fetched yet is reported: %v", e)
		}
	}
	if !sawBad || !sawBroken || !sawName {
		t.Errorf("report (want %s:11 rancher.services.bad.image, %s skipped, and k/k8s.yml:3 rancher.services.k8s.privileged):\n%s", on, broken, rep)
	}
}

func TestServicesURLs(t *testing.T) {
	got := ServicesURLs(map[string]bool{"https://b.example/s.yml": true, "http://a.example/s.yml": true, "http://off.example/s.yml": false, "kernel-headers": true})
	if diff := cmp.Diff([]string{"http://a.example/s.yml", "https://b.example/s.yml"}, got); diff != "" {
		t.Errorf("ServicesURLs (-want +got):\n%s", diff)
	}
	if p := ServicesFilePath("http://a.example/s.yml"); filepath.Dir(p) != ServicesIncludeDir || p == ServicesFilePath("https://b.example/s.yml") {
		t.Errorf("ServicesFilePath: %s", p)
	}
}

func TestRepositoryURLs(t *testing.T) {
	repos := map[string]Repository{"core": {URL: "https://services.example/v1/"}, "a-mine": {URL: "http://192.0.2.1/repo"}, "empty": {}}
	got := RepositoryURLs(repos, "kernel-headers")
	if diff := cmp.Diff([]string{"http://192.0.2.1/repo/k/kernel-headers.yml", "https://services.example/v1/k/kernel-headers.yml"}, got); diff != "" {
		t.Errorf("RepositoryURLs (-want +got):\n%s", diff)
	}
	for _, name := range []string{"", "..", "a/b", "http://192.0.2.1/s.yml"} {
		if got := RepositoryURLs(repos, name); got != nil {
			t.Errorf("RepositoryURLs(%q) = %q; want none", name, got)
		}
	}
}
