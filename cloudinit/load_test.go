package cloudinit

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestLoadGolden merges each testdata/load/<case>/ machine root (without
// the built-in defaults, which change on their own) and compares the merged
// document and the report with testdata/load/<case>.golden.
func TestLoadGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/load/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			tree, rep, err := loadOver(dir, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, &Report{})
			if err != nil {
				t.Fatalf("loadOver: %v", err)
			}
			StripComments(tree)
			out, err := Encode(tree)
			if err != nil {
				t.Fatal(err)
			}
			got := string(out) + "# report:\n" + prefixLines(rep.String(), "# ")
			golden := dir + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test -update): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("merged %s mismatch (-want +got):\n%s", dir, diff)
			}
		})
	}
}

func prefixLines(s, p string) string {
	if s == "" {
		return ""
	}
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(p + l)
		}
	}
	return b.String()
}

// TestLoadPrecedence asserts what a user would see of the precedence case.
func TestLoadPrecedence(t *testing.T) {
	cfg, rep, err := Load("testdata/load/precedence")
	if err != nil {
		t.Fatal(err)
	}
	if rep.HasErrors() {
		t.Errorf("Load errors:\n%s", rep)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"hostname: cmdline beats local beats user-data beats metadata beats OEM", cfg.Hostname, "from-cmdline"},
		{"ssh keys are the union, without duplicates", cfg.SSHAuthorizedKeys, []string{"ssh-ed25519 AAAAmeta meta@key", "ssh-ed25519 AAAAshared shared@key", "ssh-ed25519 AAAAuser user@key"}},
		{"lists replace", cfg.Rancher.Modules, []string{"cmd-mod"}},
		{"cloud-config.d in name order", cfg.Rancher.Environment["EXTRA"], "20"},
		{"$public_ipv4 from metadata", cfg.Rancher.Environment["PUBLIC"], "203.0.113.7"},
		{"$private_ipv4 from metadata", cfg.Rancher.Environment["PRIVATE"], "192.0.2.7"},
		{"maps merge key by key (OEM mtu)", cfg.Rancher.Network.Interfaces["eth0"].MTU, 1400},
		{"maps merge key by key (metadata address)", cfg.Rancher.Network.Interfaces["eth0"].Address, "192.0.2.7/24"},
		{"cmdline int", cfg.Rancher.Network.DHCPTimeout, 25},
		{"later cloud-config.d wins", cfg.Rancher.Console, "later-console"},
		{"built-in default state dev", cfg.Rancher.State.Dev, "LABEL=RANCHER_STATE"},
		{"built-in default timeout", cfg.Rancher.CloudInit.Timeout, 60},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.what, diff)
		}
	}
}

// TestLoadBadSources: a source that is not YAML is skipped whole, a bad key
// keeps the lower layer's value, and the machine still gets the rest.
func TestLoadBadSources(t *testing.T) {
	cfg, rep, err := Load("testdata/load/bad-sources")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.HasErrors() {
		t.Fatal("Load reported no errors")
	}
	if cfg.Hostname == "never" {
		t.Error("a source with a syntax error was used")
	}
	eth0 := cfg.Rancher.Network.Interfaces["eth0"]
	if eth0.MTU != 1500 || eth0.Address != "192.0.2.9/24" {
		t.Errorf("eth0 = mtu %d address %q, want the lower layer's 1500 and 192.0.2.9/24", eth0.MTU, eth0.Address)
	}
	if !cfg.Rancher.Debug {
		t.Error("rancher.debug: the lower layer's true was lost")
	}
	if cfg.Rancher.SSH.Port != 2222 {
		t.Errorf("rancher.ssh.port = %d, want 2222 from the cmdline", cfg.Rancher.SSH.Port)
	}
	if cfg.Rancher.Network.DHCPTimeout != 10 {
		t.Errorf("dhcp_timeout = %d, want the default 10", cfg.Rancher.Network.DHCPTimeout)
	}
}

// TestDefaults: the embedded defaults are clean and define what the other
// parts rely on.
func TestDefaults(t *testing.T) {
	tree, rep := DefaultsTree()
	if len(rep.Entries) > 0 {
		t.Errorf("built-in defaults report:\n%s", rep)
	}
	cfg := Decode(tree)
	if cfg.Rancher.State.Dev != "LABEL=RANCHER_STATE" || cfg.Rancher.CloudInit.Timeout != 60 || len(cfg.Rancher.CloudInit.Datasources) == 0 {
		t.Errorf("defaults: state.dev %q, cloud_init %+v", cfg.Rancher.State.Dev, cfg.Rancher.CloudInit)
	}
	if cfg.Rancher.SystemDocker.DataRoot == "" || cfg.Rancher.Docker.DataRoot == "" {
		t.Error("defaults: engine data roots unset")
	}
}

func TestLoadEmptyRoot(t *testing.T) {
	cfg, rep, err := Load(t.TempDir())
	if err != nil || rep.HasErrors() {
		t.Fatalf("Load(empty root) = %v\n%s", err, rep)
	}
	if cfg.Hostname != "rancher" {
		t.Errorf("hostname = %q, want the default rancher", cfg.Hostname)
	}
}

func TestIsConfigSource(t *testing.T) {
	for p, want := range map[string]bool{
		"/var/lib/rancher/conf/cloud-config.d/cloud-config1.yml": true,
		"/var/lib/rancher/conf/cloud-config.d/boot.yml":          true,
		"/var/lib/rancher/conf/cloud-config.d//x.yml":            true,
		"/var/lib/rancher/conf/cloud-config.yml":                 true,
		"/usr/share/ros/oem/oem-config.yml":                      true,
		"/var/lib/rancher/conf/cloud-config.d/notes.txt":         false,
		"/var/lib/rancher/conf/cloud-config.d/sub/x.yml":         false,
		"/var/lib/rancher/conf/e2e-kept":                         false,
		"/etc/hosts":                                             false,
	} {
		if got := IsConfigSource(p); got != want {
			t.Errorf("IsConfigSource(%q) = %v, want %v", p, got, want)
		}
	}
}
