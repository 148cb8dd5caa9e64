package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthos/berth/sysinit"
)

// ros runs the CLI with args and returns stdout, stderr and the exit code.
func ros(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	code := 0
	if err := root.Execute(); err != nil {
		errb.WriteString(err.Error())
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const localConfig = `# written by hand
hostname: myhost # keep me
rancher:
  # the network
  network:
    dhcp_timeout: 5
  password: secret
  zz_unknown_key: stays
ssh_authorized_keys:
  - ssh-ed25519 AAAA a@b
`

func machine(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "proc/cmdline"), "BOOT_IMAGE=/vmlinuz console=ttyS0 rancher.cloud_init.datasources=[ec2,gce] rancher.debug\n")
	writeFile(t, filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml"), localConfig)
	return dir
}

func TestConfigGet(t *testing.T) {
	dir := machine(t)
	tests := []struct {
		key, want string
		code      int
	}{
		{"rancher.cloud_init.datasources", "- ec2\n- gce\n", 0},
		{"rancher.debug", "true\n", 0},
		{"hostname", "myhost\n", 0},
		{"rancher.network.dhcp_timeout", "5\n", 0},
		{"rancher.state.dev", "LABEL=RANCHER_STATE\n", 0},
		{"rancher.network.dns.nameservers", "", 0},
		{"rancher.no_such_key", "", 1},
	}
	for _, tt := range tests {
		out, errOut, code := ros(t, "", "--root", dir, "config", "get", tt.key)
		if out != tt.want || code != tt.code {
			t.Errorf("ros config get %s = %q (exit %d, stderr %q), want %q (exit %d)", tt.key, out, code, errOut, tt.want, tt.code)
		}
	}
}

func TestConfigSet(t *testing.T) {
	dir := machine(t)
	local := filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml")
	for _, args := range [][]string{
		{"rancher.network.dhcp_timeout", "30"},
		{"hostname", "1234"},
		{"rancher.sysctl.net.ipv4.ip_forward", "1"},
		{"rancher.cloud_init.datasources", "[openstack,configdrive:/dev/sr0]"},
		{"rancher.network.interfaces.eth1.100.mtu", "1400"},
	} {
		if _, errOut, code := ros(t, "", append([]string{"--root", dir, "config", "set"}, args...)...); code != 0 {
			t.Fatalf("ros config set %v: exit %d: %s", args, code, errOut)
		}
	}
	got, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	want := `# written by hand
hostname: "1234" # keep me
rancher:
  # the network
  network:
    dhcp_timeout: 30
    interfaces:
      eth1.100:
        mtu: 1400
  password: secret
  zz_unknown_key: stays
  sysctl:
    net.ipv4.ip_forward: "1"
  cloud_init:
    datasources:
      - openstack
      - configdrive:/dev/sr0
ssh_authorized_keys:
  - ssh-ed25519 AAAA a@b
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("cloud-config.yml after set mismatch (-want +got):\n%s", diff)
	}
	out, _, _ := ros(t, "", "--root", dir, "config", "get", "rancher.network.interfaces.eth1.100.mtu")
	if out != "1400\n" {
		t.Errorf("get after set = %q, want 1400", out)
	}
}

func TestConfigSetRefusesWrongType(t *testing.T) {
	dir := machine(t)
	local := filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml")
	tests := []struct{ key, value, want string }{
		{"rancher.network.dhcp_timeout", "abc", `rancher.network.dhcp_timeout: want an integer, got "abc"`},
		{"rancher.debug", "maybe", `rancher.debug: want true or false, got "maybe"`},
		{"rancher.ssh.port", "99999", `rancher.ssh.port: want a port 1-65535, got 99999`},
		{"rancher.network", "x", `rancher.network: want a mapping, got "x"`},
		{"rancher.bogus", "1", `rancher.bogus: unknown key`},
	}
	for _, tt := range tests {
		_, errOut, code := ros(t, "", "--root", dir, "config", "set", tt.key, tt.value)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("ros config set %s %s: exit %d, stderr %q; want exit 1 and %q", tt.key, tt.value, code, errOut, tt.want)
		}
	}
	if got, _ := os.ReadFile(local); string(got) != localConfig {
		t.Errorf("a refused set changed the file:\n%s", got)
	}
}

func TestConfigMerge(t *testing.T) {
	dir := machine(t)
	in := filepath.Join(t.TempDir(), "in.yml")
	writeFile(t, in, "x-ns: &ns [192.0.2.53]\nrancher:\n  network:\n    dns:\n      nameservers: *ns\nssh_authorized_keys:\n  - ssh-ed25519 BBBB c@d\n")
	if _, errOut, code := ros(t, "", "--root", dir, "config", "merge", "-i", in); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, errOut)
	}
	for key, want := range map[string]string{
		"rancher.network.dns.nameservers": "- 192.0.2.53\n",
		"rancher.network.dhcp_timeout":    "5\n",
		"ssh_authorized_keys":             "- ssh-ed25519 AAAA a@b\n- ssh-ed25519 BBBB c@d\n",
	} {
		if out, _, _ := ros(t, "", "--root", dir, "config", "get", key); out != want {
			t.Errorf("get %s after merge = %q, want %q", key, out, want)
		}
	}
	// Aliases in the input are expanded, so the local file stays valid YAML.
	local, _ := os.ReadFile(filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml"))
	if strings.Contains(string(local), "*ns") {
		t.Errorf("merge left an alias in the local config:\n%s", local)
	}
	// Refused whole when the input has errors.
	before, _ := os.ReadFile(filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml"))
	_, errOut, code := ros(t, "hostname: ok\nrancher:\n  debug: maybe\n", "--root", dir, "config", "merge", "-i", "-")
	if code != 1 || !strings.Contains(errOut, "stdin:3:10: rancher.debug: want true or false") {
		t.Errorf("merge of a bad file: exit %d, stderr %q", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml")); !bytes.Equal(before, after) {
		t.Error("a refused merge changed the local config")
	}
}

func TestConfigExport(t *testing.T) {
	dir := machine(t)
	out, _, code := ros(t, "", "--root", dir, "config", "export")
	if code != 0 {
		t.Fatalf("export: exit %d", code)
	}
	if strings.Contains(out, "secret") || strings.Contains(out, "ssh-ed25519") {
		t.Errorf("export shows secrets:\n%s", out)
	}
	if !strings.Contains(out, "hostname: myhost") || !strings.Contains(out, "zz_unknown_key: stays") {
		t.Errorf("export lost keys:\n%s", out)
	}
	out, _, _ = ros(t, "", "--root", dir, "config", "export", "--private")
	if !strings.Contains(out, "password: secret") || !strings.Contains(out, "ssh-ed25519 AAAA a@b") {
		t.Errorf("export --private left out secrets:\n%s", out)
	}
	out, _, _ = ros(t, "", "--root", dir, "config", "export", "--full")
	for _, want := range []string{"dev: LABEL=RANCHER_STATE", "- ec2", "debug: true", "hostname: myhost"} {
		if !strings.Contains(out, want) {
			t.Errorf("export --full lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("export --full shows the password:\n%s", out)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		code int
	}{
		{"clean", "#cloud-config\nhostname: a\n", "", 0},
		{"warning only", "rancher:\n  shiny: 1\n", "stdin:2:3: rancher.shiny: warning: unknown key (ignored)\n", 0},
		{"errors", "rancher:\n  network:\n    interfaces:\n      eth0:\n        mtu: abc\n",
			"stdin:5:14: rancher.network.interfaces.eth0.mtu: want an integer, got \"abc\"\n", 1},
		{"syntax", "a: [\n", "stdin:1: did not find expected node content\n", 1},
		{"write_files for a service that is not enabled",
			"write_files:\n- path: /etc/a\n  container: ntp\n- path: /etc/b\n  container: ntpd\n- path: /etc/c\n  container: syslog\nrancher:\n  disable: [syslog]\n",
			"stdin:5:14: write_files[1].container: warning: no enabled service is named \"ntpd\": the file would be written nowhere\n" +
				"stdin:7:14: write_files[2].container: warning: no enabled service is named \"syslog\": the file would be written nowhere\n", 0},
		{"services_include of a name no source defines",
			"rancher:\n  services_include:\n    kernel-headers: true\n    acpid: true\n    mine: true\n    off: false\n    \"http://192.0.2.1/s.yml\": true\n  services:\n    mine: {image: berth/base:x}\n",
			"stdin:3:5: rancher.services_include.kernel-headers: warning: no service is named \"kernel-headers\" here or in the built-in ones, and no rancher.repositories is set to look it up in: nothing is included (set a repository, or give a services file's URL)\n", 0},
		{"services_include of a name with a repository to look it up in",
			"rancher:\n  services_include:\n    kernel-headers: true\n  repositories:\n    mine: {url: \"http://192.0.2.1/repo\"}\n", "", 0},
		{"script", "#!/bin/sh\necho hi\n", "stdin: script user-data (18 bytes) is run as it is; not checked\n", 0},
		{"mime with a bad cloud-config part", "Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/cloud-config\n\nrancher:\n  debug: maybe\n--B--\n",
			"stdin (cloud-config):2:10: rancher.debug: want true or false, got \"maybe\"\n", 1},
		{"mime with an unknown part", "Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/x-include-url\n\nhttp://192.0.2.1/\n--B--\n",
			"stdin: decode user-data: MIME part part-001: unsupported user-data format: content type text/x-include-url (want text/cloud-config or text/x-shellscript)\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, code := ros(t, tt.in, "config", "validate", "-i", "-")
			if out != tt.want || code != tt.code {
				t.Errorf("validate = %q exit %d, want %q exit %d", out, code, tt.want, tt.code)
			}
		})
	}
}

// TestConfigValidateInlineTLS: inline User Docker certificates that do not
// fit together are a warning at the key at fault, as the boot would not
// use them; ones that fit are clean.
func TestConfigValidateInlineTLS(t *testing.T) {
	now := time.Now()
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if _, err := sysinit.GenerateTLS(d, d, true, []string{"192.0.2.10"}, now); err != nil {
			t.Fatal(err)
		}
	}
	pem := func(dir, name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return "|\n      " + strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", "\n      ") + "\n"
	}
	doc := func(caDir, certDir string, keys ...string) string {
		s := "rancher:\n  docker:\n    tls: true\n"
		for _, k := range keys {
			switch k {
			case "ca_cert":
				s += "    ca_cert: " + pem(caDir, sysinit.TLSCACert)
			case "server_cert":
				s += "    server_cert: " + pem(certDir, sysinit.TLSServerCert)
			case "server_key":
				s += "    server_key: " + pem(certDir, sysinit.TLSServerKey)
			}
		}
		return s
	}
	all := []string{"ca_cert", "server_cert", "server_key"}
	other := doc(a, b, all...)
	certLine := strings.Count(other[:strings.Index(other, "server_cert:")], "\n") + 1
	tests := []struct {
		name, in, want string
	}{
		{"fit together", doc(a, a, all...), ""},
		{"signed by another CA", other, fmt.Sprintf("stdin:%d:18: rancher.docker.server_cert: warning: server certificate against the CA: x509: ", certLine)},
		{"no key", doc(a, a, "ca_cert", "server_cert"), "stdin:3:5: rancher.docker: warning: ca_cert, server_cert and server_key go together; rancher.docker.server_key missing, so they are not used\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, code := ros(t, tt.in, "config", "validate", "-i", "-")
			if code != 0 || (tt.want == "") != (out == "") || !strings.HasPrefix(out, tt.want) {
				t.Errorf("validate = %q exit %d, want %q... exit 0", out, code, tt.want)
			}
		})
	}
}

// TestConfigValidateInertKeys: RancherOS keys Berth reads but does not act
// on are warnings at their line, and the config is still valid.
func TestConfigValidateInertKeys(t *testing.T) {
	in := "#cloud-config\nrancher:\n  console: debian\n  password: secret\n"
	out, stderr, code := ros(t, in, "config", "validate", "-i", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s %s; want 0 (warnings only)", code, out, stderr)
	}
	for _, want := range []string{
		`stdin:3:3: rancher.console: warning: not used: Berth ships one console, default (busybox and dropbear), not "debian"`,
		"stdin:4:3: rancher.password: warning: not used: the console's SSH takes keys only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output:\n%s\nwant %q", out, want)
		}
	}
	if out, _, _ := ros(t, "rancher:\n  console: default\n", "config", "validate", "-i", "-"); out != "" {
		t.Errorf("console: default gives %q, want nothing", out)
	}
}
