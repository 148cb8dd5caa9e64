package sysinit

import (
	"strings"
	"testing"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/platforms/sysimages"
	"github.com/google/go-cmp/cmp"
)

func loadDefaults(t *testing.T) *cloudinit.Config {
	t.Helper()
	cfg, _, err := cloudinit.Load(t.TempDir())
	if err != nil {
		t.Fatalf("cloudinit.Load(empty root): %v", err)
	}
	return cfg
}

func names(specs []Spec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

func TestDefaultServices(t *testing.T) {
	cfg := loadDefaults(t)
	specs := ResolveImages(Specs(cfg), "v1.0+dirty")
	ordered, blocked := orderSpecs(specs, map[string]bool{CloudInitExecute: true})
	if len(blocked) != 0 {
		t.Fatalf("default services blocked: %v", blocked)
	}
	// The console and docker come after cloud-init-execute, which PID 1
	// runs (without it they are blocked); udev, network, ntp and syslog
	// after docker. Ties are in name order.
	if _, blocked := orderSpecs(specs, nil); blocked["console"] == nil || blocked["docker"] == nil {
		t.Errorf("console and docker are not blocked without cloud-init-execute: %v", blocked)
	}
	want := []string{"console", "docker", "network", "ntp", "syslog", "udev"}
	if diff := cmp.Diff(want, names(ordered)); diff != "" {
		t.Errorf("default services in start order (-want +got):\n%s", diff)
	}
	for _, s := range ordered {
		if s.Service.Net != "host" {
			t.Errorf("service %s: net = %q, want host", s.Name, s.Service.Net)
		}
		if !strings.HasSuffix(s.Service.Image, ":v1.0_dirty") || !strings.HasPrefix(s.Service.Image, "berth/") {
			t.Errorf("service %s: image = %q, want a berth/ image tagged v1.0_dirty", s.Name, s.Service.Image)
		}
		if _, err := createOptions(s); err != nil {
			t.Errorf("createOptions(%s): %v", s.Name, err)
		}
	}
	if got := sysimages.Tag("v1.0+dirty"); got != ImageTag("v1.0+dirty") {
		t.Errorf("sysimages.Tag = %q, ImageTag = %q; they must agree", got, ImageTag("v1.0+dirty"))
	}
	byName := map[string]Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	if _, ok := byName[CloudInitExecute]; ok {
		t.Error("cloud-init-execute is a service; PID 1 runs it")
	}
	for _, n := range []string{"console", "docker"} {
		if !contains(byName[n].After, CloudInitExecute) {
			t.Errorf("%s does not come after cloud-init-execute: after %v", n, byName[n].After)
		}
	}
	if _, ok := byName["acpid"]; ok {
		t.Error("acpid is enabled by default; it is optional")
	}
}

func TestSpecsFromConfig(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*cloudinit.Config)
		check func(t *testing.T, byName map[string]Spec)
	}{
		{"services_include enables an optional service", func(c *cloudinit.Config) {
			c.Rancher.ServicesInclude = map[string]bool{"acpid": true}
		}, func(t *testing.T, m map[string]Spec) {
			if _, ok := m["acpid"]; !ok {
				t.Error("acpid not enabled by services_include")
			}
		}},
		{"services_include false and rancher.disable disable", func(c *cloudinit.Config) {
			c.Rancher.ServicesInclude = map[string]bool{"ntp": false}
			c.Rancher.Disable = []string{"syslog"}
		}, func(t *testing.T, m map[string]Spec) {
			for _, n := range []string{"ntp", "syslog"} {
				if _, ok := m[n]; ok {
					t.Errorf("%s still enabled", n)
				}
			}
		}},
		{"rancher.docker renders the user engine's flags", func(c *cloudinit.Config) {
			c.Rancher.Docker.StorageDriver = "vfs"
			c.Rancher.Docker.InsecureRegistry = []string{"registry.example:5000"}
			c.Rancher.Docker.ExtraArgs = []string{"--mtu=1400"}
			c.Rancher.Docker.Environment = []string{"HTTP_PROXY=http://192.0.2.1:3128"}
		}, func(t *testing.T, m map[string]Spec) {
			cmd := strings.Join(m["docker"].Service.Command, " ")
			for _, want := range []string{"dockerd ", "--host=unix:///var/run/docker.sock", "--storage-driver=vfs", "--insecure-registry=registry.example:5000", "--mtu=1400", "--log-opt=max-size=25m"} {
				if !strings.Contains(cmd, want) {
					t.Errorf("docker command %q lacks %q", cmd, want)
				}
			}
			if !contains(m["docker"].Service.Environment, "HTTP_PROXY=http://192.0.2.1:3128") {
				t.Errorf("docker environment = %v", m["docker"].Service.Environment)
			}
		}},
		{"rancher.network's proxies: User Docker gets them, a service asks by name, explicit values win", func(c *cloudinit.Config) {
			c.Rancher.Network.HTTPProxy = "http://192.0.2.3:3128"
			c.Rancher.Network.NoProxy = "localhost,192.0.2.0/24"
			c.Rancher.Docker.Environment = []string{"NO_PROXY=docker.example"}
			c.Rancher.Environment = map[string]string{"http_proxy": "http://192.0.2.4:3128"}
			c.Rancher.Services["mine"] = &cloudinit.Service{Image: "x", Net: "host",
				Environment: []string{"HTTP_PROXY", "http_proxy", "NO_PROXY"}}
		}, func(t *testing.T, m map[string]Spec) {
			want := []string{"NO_PROXY=docker.example", "HTTP_PROXY=http://192.0.2.3:3128", "http_proxy=http://192.0.2.4:3128", "no_proxy=localhost,192.0.2.0/24"}
			if diff := cmp.Diff(want, m["docker"].Service.Environment); diff != "" {
				t.Errorf("docker environment (-want +got):\n%s", diff)
			}
			want = []string{"HTTP_PROXY=http://192.0.2.3:3128", "http_proxy=http://192.0.2.4:3128", "NO_PROXY=localhost,192.0.2.0/24"}
			if diff := cmp.Diff(want, m["mine"].Service.Environment); diff != "" {
				t.Errorf("mine's environment (-want +got):\n%s", diff)
			}
			if env := m["console"].Service.Environment; len(env) != 0 {
				t.Errorf("console environment = %v; want none (it did not ask)", env)
			}
		}},
		{"after a disabled service is satisfied; after an undefined one stays", func(c *cloudinit.Config) {
			c.Rancher.Disable = []string{"middle"}
			c.Rancher.Services["first"] = &cloudinit.Service{Image: "x", Net: "host"}
			c.Rancher.Services["middle"] = &cloudinit.Service{Image: "x", Net: "host",
				Labels: map[string]string{cloudinit.LabelAfter: "first"}}
			c.Rancher.Services["mine"] = &cloudinit.Service{Image: "x", Net: "host",
				Labels: map[string]string{cloudinit.LabelAfter: "middle,nosuch"}}
		}, func(t *testing.T, m map[string]Spec) {
			if _, ok := m["middle"]; ok {
				t.Errorf("middle is disabled but has a spec")
			}
			if diff := cmp.Diff([]string{"first", "nosuch"}, m["mine"].After); diff != "" {
				t.Errorf("mine.After with middle disabled (-want +got):\n%s", diff)
			}
		}},
		{"before folds into after; environment globs", func(c *cloudinit.Config) {
			c.Rancher.Environment = map[string]string{"PROXY_A": "1", "PROXY_B": "2", "OTHER": "3"}
			c.Rancher.Services["mine"] = &cloudinit.Service{Image: "x", Net: "host",
				Environment: []string{"PROXY_*", "OTHER", "MISSING", "K=V"},
				Labels:      map[string]string{cloudinit.LabelBefore: "network"}}
		}, func(t *testing.T, m map[string]Spec) {
			if !contains(m["network"].After, "mine") {
				t.Errorf("network.After = %v, want mine in it", m["network"].After)
			}
			if diff := cmp.Diff([]string{"PROXY_A=1", "PROXY_B=2", "OTHER=3", "K=V"}, m["mine"].Service.Environment); diff != "" {
				t.Errorf("environment (-want +got):\n%s", diff)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadDefaults(t)
			tt.edit(cfg)
			m := map[string]Spec{}
			for _, s := range Specs(cfg) {
				m[s.Name] = s
			}
			tt.check(t, m)
		})
	}
}

func TestHashChangesWithSpec(t *testing.T) {
	a := Spec{Name: "x", Service: cloudinit.Service{Image: "i", Command: []string{"a"}}}
	b := a
	b.Service.Command = []string{"b"}
	if a.Hash() == b.Hash() {
		t.Error("Hash() is the same for different commands")
	}
	if a.Hash() != (Spec{Name: "x", Service: cloudinit.Service{Image: "i", Command: []string{"a"}}}).Hash() {
		t.Error("Hash() differs for equal specs")
	}
}

func TestRestartWanted(t *testing.T) {
	tests := []struct {
		policy         string
		code, restarts int
		want           bool
	}{
		{"", 1, 0, false}, {"no", 1, 0, false}, {"always", 0, 9, true}, {"unless-stopped", 0, 0, true},
		{"on-failure", 0, 0, false}, {"on-failure", 1, 100, true}, {"on-failure:3", 1, 2, true}, {"on-failure:3", 1, 3, false},
	}
	for _, tt := range tests {
		if got := restartWanted(tt.policy, tt.code, tt.restarts); got != tt.want {
			t.Errorf("restartWanted(%q, %d, %d) = %v, want %v", tt.policy, tt.code, tt.restarts, got, tt.want)
		}
	}
}

// TestUnplacedFiles: a write_files entry for a service that is not there
// (a typo, a disabled one) is named, so the boot can say it went nowhere;
// host files and files for enabled services are not.
func TestUnplacedFiles(t *testing.T) {
	ntp := cloudinit.Service{Image: "x"}
	cons := cloudinit.Service{Image: "x"}
	cfg := &cloudinit.Config{
		WriteFiles: []cloudinit.WriteFile{
			{Path: "/host"}, {Path: "/a", Container: "ntp"}, {Path: "/b", Container: "consol"}, {Path: "/c", Container: "console"},
		},
		Rancher: cloudinit.Rancher{Services: map[string]*cloudinit.Service{"ntp": &ntp, "console": &cons}, Disable: []string{"console"}},
	}
	var got []string
	for _, f := range UnplacedFiles(cfg) {
		got = append(got, f.Container+":"+f.Path)
	}
	if diff := cmp.Diff([]string{"consol:/b", "console:/c"}, got); diff != "" {
		t.Errorf("UnplacedFiles (-want +got):\n%s", diff)
	}
	for _, s := range Specs(cfg) {
		if s.Name == "ntp" && (len(s.Files) != 1 || s.Files[0].Path != "/a") {
			t.Errorf("ntp's spec has files %+v, want /a", s.Files)
		}
	}
}
