package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthos/berth/netconf"
	"github.com/google/go-cmp/cmp"
)

func TestParseNetworkConfig(t *testing.T) {
	tests := []struct {
		name, in string
		want     netconf.Config
		wantHost string
		wantErr  string
	}{
		{
			name:     "cloud-config",
			in:       "hostname: h1\nrancher:\n  network:\n    interfaces:\n      eth0: {address: 192.0.2.10/24}\n",
			want:     netconf.Config{Interfaces: map[string]netconf.InterfaceConfig{"eth0": {Address: "192.0.2.10/24"}}},
			wantHost: "h1",
		},
		{
			name: "bare network config",
			in:   "dns:\n  nameservers: [192.0.2.53]\ninterfaces:\n  eth*: {dhcp: true}\n",
			want: netconf.Config{DNS: netconf.DNSConfig{Nameservers: []string{"192.0.2.53"}}, Interfaces: map[string]netconf.InterfaceConfig{"eth*": {DHCP: new(true)}}},
		},
		{name: "empty", in: ""},
		{name: "unknown key", in: "interfaces:\n  eth0: {adress: 192.0.2.10/24}\n", wantErr: "line 2: field adress not found"},
		{
			name:    "unknown key in a cloud-config, with its line",
			in:      "ssh_authorized_keys: [k]\nrancher:\n  docker: {tls: true}\n  network:\n    interfaces:\n      eth0:\n        gatway: 192.0.2.1\n",
			wantErr: "line 7: field gatway not found",
		},
		{
			name: "other keys of a cloud-config are not checked here",
			in:   "write_files: [{path: /x}]\nrancher:\n  docker: {tls: true}\n  network:\n    dns: {search: [example.com]}\n",
			want: netconf.Config{DNS: netconf.DNSConfig{Search: []string{"example.com"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, host, err := parseNetworkConfig([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseNetworkConfig() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseNetworkConfig() error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseNetworkConfig() (-want +got):\n%s", diff)
			}
			if host != tt.wantHost {
				t.Errorf("hostname = %q, want %q", host, tt.wantHost)
			}
		})
	}
}

// TestNetconfHelperProcess is the ros binary inside a test's network
// namespace; only TestNetconfCommand starts it.
func TestNetconfHelperProcess(t *testing.T) {
	argsJSON := os.Getenv("BERTH_NETCONF_HELPER_ARGS")
	if argsJSON == "" {
		t.Skip("helper process for TestNetconfCommand")
	}
	var args []string
	if err := json.Unmarshal([]byte(argsJSON), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(100)
	}
	os.Exit(run(args[0], args[1:]))
}

func TestNetconfCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2, in .ci/deps)")
	}
	ns := fmt.Sprintf("berth-ros-%08x", rand.Uint32())
	ipc := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	ipc("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipc("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	ipc("-n", ns, "link", "set", "peer0", "up")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	ros := func(argv0 string, args ...string) (string, string, int) {
		t.Helper()
		a, _ := json.Marshal(append([]string{argv0}, args...))
		cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetconfHelperProcess$")
		cmd.Env = append(os.Environ(), "BERTH_NETCONF_HELPER_ARGS="+string(a))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run helper: %v", err)
		}
		return out.String(), errb.String(), code
	}
	good := filepath.Join(dir, "good.yml")
	os.WriteFile(good, []byte("hostname: cli.example\nrancher:\n  network:\n    dns: {nameservers: [192.0.2.53]}\n    interfaces:\n      eth0: {address: 192.0.2.10/24, gateway: 192.0.2.1}\n"), 0o644)
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte("interfaces:\n  eth0: {address: 192.0.2.10}\n  bond0: {bond_opts: {mode: fastest}}\n"), 0o644)

	_, stderr, code := ros("ros", "--root", root, "netconf", "apply", "-c", bad)
	if code != 2 || !strings.Contains(stderr, `rancher.network.interfaces.eth0.address: "192.0.2.10" has no prefix length`) ||
		!strings.Contains(stderr, `rancher.network.interfaces.bond0.bond_opts.mode: unknown bond mode "fastest"`) {
		t.Errorf("apply bad config: exit %d, stderr %q; want 2 and both key paths", code, stderr)
	}
	if out := ipc("-n", ns, "-o", "addr", "show", "dev", "eth0", "scope", "global"); out != "" {
		t.Errorf("after a rejected config eth0 has %q, want nothing applied", out)
	}
	// The argv[0] name netconf is `ros netconf apply`.
	if _, stderr, code := ros("netconf", "--root", root, "-c", good); code != 0 {
		t.Fatalf("netconf -c good.yml: exit %d: %s", code, stderr)
	}
	first := ipc("-n", ns, "-o", "addr", "show", "dev", "eth0", "scope", "global") + ipc("-n", ns, "route", "show", "dev", "eth0")
	if !strings.Contains(first, "192.0.2.10/24") || !strings.Contains(first, "default via 192.0.2.1") {
		t.Errorf("after apply: %q, want 192.0.2.10/24 and the default route", first)
	}
	if _, stderr, code := ros("ros", "--root", root, "netconf", "apply", "-c", good); code != 0 {
		t.Fatalf("second apply: exit %d: %s", code, stderr)
	}
	if second := ipc("-n", ns, "-o", "addr", "show", "dev", "eth0", "scope", "global") + ipc("-n", ns, "route", "show", "dev", "eth0"); second != first {
		t.Errorf("second apply changed the network:\nfirst  %q\nsecond %q", first, second)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "cli.example\n" {
		t.Errorf("hostname file = %q, want cli.example", b)
	}
	out, stderr, code := ros("ros", "--root", root, "netconf", "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, stderr)
	}
	var rep netconf.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json is not JSON: %v: %s", err, out)
	}
	found := false
	for _, l := range rep.Links {
		if l.Name == "eth0" && strings.Contains(strings.Join(l.Addresses, " "), "192.0.2.10/24") {
			found = true
		}
	}
	if !found || rep.Hostname != "cli.example" || len(rep.Nameservers) != 1 || rep.Nameservers[0] != "192.0.2.53" {
		t.Errorf("status --json = %+v, want eth0 with 192.0.2.10/24, hostname and DNS", rep)
	}
	// Without -c: the merged config under --root (here the local cloud-config.yml).
	os.MkdirAll(filepath.Join(root, "var/lib/rancher/conf"), 0o755)
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/cmdline"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "var/lib/rancher/conf/cloud-config.yml"), []byte("hostname: cli.example\nrancher:\n  network:\n    dns: {nameservers: [192.0.2.53]}\n    interfaces:\n      eth0: {address: 192.0.2.11/24}\n"), 0o644)
	if _, stderr, code := ros("ros", "--root", root, "netconf", "apply"); code != 0 {
		t.Fatalf("apply from the merged config: exit %d: %s", code, stderr)
	}
	if got := ipc("-n", ns, "-o", "addr", "show", "dev", "eth0", "scope", "global"); !strings.Contains(got, "192.0.2.11/24") || strings.Contains(got, "192.0.2.10/24") {
		t.Errorf("after applying the merged config eth0 has %q, want 192.0.2.11/24 only", got)
	}
	if got := ipc("-n", ns, "route", "show", "dev", "eth0"); strings.Contains(got, "default") {
		t.Errorf("routes %q: the gateway no longer configured must be gone", got)
	}
	// --foreground stays until SIGTERM (a network service that keeps
	// leases renewed), then exits 0.
	a, _ := json.Marshal([]string{"netconf", "--root", root, "--foreground"})
	fg := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetconfHelperProcess$")
	fg.Env = append(os.Environ(), "BERTH_NETCONF_HELPER_ARGS="+string(a))
	var fgErr bytes.Buffer
	fg.Stderr = &fgErr
	if err := fg.Start(); err != nil {
		t.Fatalf("start netconf --foreground: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- fg.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("netconf --foreground exited at once: %v: %s", err, fgErr.String())
	case <-time.After(500 * time.Millisecond):
	}
	fg.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("netconf --foreground after SIGTERM: %v: %s", err, fgErr.String())
		}
	case <-time.After(5 * time.Second):
		fg.Process.Kill()
		t.Errorf("netconf --foreground did not stop on SIGTERM")
	}
	out, _, code = ros("ros", "--root", root, "netconf", "status")
	for _, want := range []string{"eth0", "192.0.2.11/24", "192.0.2.0/24", "proto kernel", "nameserver 192.0.2.53", "HOSTNAME cli.example"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status (exit %d) = %q, want it to show %q", code, out, want)
		}
	}
}
