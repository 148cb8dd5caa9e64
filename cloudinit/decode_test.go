package cloudinit

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berthos/berth/netconf"
)

func ptr[T any](v T) *T { return &v }

// TestParseTypes: each kind of key takes the YAML forms RancherOS 1.x
// accepted and lands in the typed Config.
func TestParseTypes(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{"hostname", "hostname: node-1", Config{Hostname: "node-1"}},
		{"hostname number is a string", "hostname: 1234", Config{Hostname: "1234"}},
		{"ssh keys", "ssh_authorized_keys:\n  - ssh-ed25519 AAA a\n  - ssh-rsa BBB b", Config{SSHAuthorizedKeys: []string{"ssh-ed25519 AAA a", "ssh-rsa BBB b"}}},
		{"null ssh keys", "ssh_authorized_keys:\n", Config{}},
		{"write_files", "write_files:\n- path: /etc/x\n  content: aGk=\n  encoding: b64\n  owner: root:root\n  permissions: \"0644\"\n  container: console",
			Config{WriteFiles: []WriteFile{{Path: "/etc/x", Content: "aGk=", Encoding: "b64", Owner: "root:root", Permissions: "0644", Container: "console"}}}},
		{"unquoted octal permissions keep their digits", "write_files:\n- path: /x\n  permissions: 0755", Config{WriteFiles: []WriteFile{{Path: "/x", Permissions: "0755"}}}},
		{"runcmd forms", "runcmd:\n- []\n- [ test ]\n- [ touch, /tmp/a ]\n- echo \"\" > /tmp/b",
			Config{Runcmd: []Command{{Argv: []string{}}, {Argv: []string{"test"}}, {Argv: []string{"touch", "/tmp/a"}}, {Shell: `echo "" > /tmp/b`}}}},
		{"bootcmd", "bootcmd:\n- modprobe dummy", Config{Bootcmd: []Command{{Shell: "modprobe dummy"}}}},
		{"mounts padded", "mounts:\n- [/dev/vdb, /mnt, ext4, defaults]\n- [/dev/vdc, \"\", swap]\n- [/dev/vdd, /data]",
			Config{Mounts: []Mount{{"/dev/vdb", "/mnt", "ext4", "defaults"}, {"/dev/vdc", "", "swap", ""}, {"/dev/vdd", "/data", "", ""}}}},
		{"rancher scalars", "rancher:\n  debug: true\n  log: \"false\"\n  console: debian\n  shutdown_timeout: 30\n  resize_device: /dev/sda\n  password: pw",
			Config{Rancher: Rancher{Debug: true, Console: "debian", ShutdownTimeout: 30, ResizeDevice: "/dev/sda", Password: "pw"}}},
		{"yes is true", "rancher:\n  debug: yes", Config{Rancher: Rancher{Debug: true}}},
		{"lists and maps", "rancher:\n  modules: [btrfs]\n  disable: [a]\n  restart_services: [syslog]\n  environment: {A: a, N: 1}\n  sysctl:\n    kernel.domainname: test\n    dev.cdrom.debug: 1",
			Config{Rancher: Rancher{Modules: []string{"btrfs"}, Disable: []string{"a"}, RestartServices: []string{"syslog"},
				Environment: map[string]string{"A": "a", "N": "1"}, Sysctl: map[string]string{"kernel.domainname": "test", "dev.cdrom.debug": "1"}}}},
		{"environment as KEY=VALUE list", "rancher:\n  environment: [A=1, B=two=2]", Config{Rancher: Rancher{Environment: map[string]string{"A": "1", "B": "two=2"}}}},
		{"single value for a list", "rancher:\n  modules: btrfs", Config{Rancher: Rancher{Modules: []string{"btrfs"}}}},
		{"services_include", "rancher:\n  services_include:\n    kernel-headers: true", Config{Rancher: Rancher{ServicesInclude: map[string]bool{"kernel-headers": true}}}},
		{"cloud_init", "rancher:\n  cloud_init:\n    datasources: [ec2, \"configdrive:/dev/sr0\", url:http://192.0.2.1/x]\n    timeout: 30\n    ec2: {imdsv1: false}",
			Config{Rancher: Rancher{CloudInit: CloudInit{Datasources: []string{"ec2", "configdrive:/dev/sr0", "url:http://192.0.2.1/x"}, Timeout: 30, EC2: EC2{IMDSv1: ptr(false)}}}}},
		{"ssh", "rancher:\n  ssh:\n    port: 2222\n    daemon: false\n    listen_address: 192.0.2.1\n    keys: {ssh_host_ed25519_key: PEM}",
			Config{Rancher: Rancher{SSH: SSH{Port: 2222, Daemon: ptr(false), ListenAddress: "192.0.2.1", Keys: map[string]string{"ssh_host_ed25519_key": "PEM"}}}}},
		{"state", "rancher:\n  state:\n    dev: LABEL=X\n    fstype: ext4\n    wait: true\n    required: true\n    autoformat: [/dev/sda]\n    script: echo",
			Config{Rancher: Rancher{State: State{Dev: "LABEL=X", FSType: "ext4", Wait: true, Required: true, Autoformat: []string{"/dev/sda"}, Script: "echo"}}}},
		{"engine", "rancher:\n  docker:\n    engine: docker-17.06.1-ce\n    tls: true\n    extra_args: [--debug]\n    environment: [HTTP_PROXY=x]\n    graph: /g\n    data_root: /d\n    live_restore: true\n    log_opts: {max-size: 10m}\n    insecure_registry: [r:5000]\n    registry_mirror: http://192.0.2.2",
			Config{Rancher: Rancher{Docker: Engine{Engine: "docker-17.06.1-ce", TLS: true, ExtraArgs: []string{"--debug"}, Environment: []string{"HTTP_PROXY=x"}, Graph: "/g", DataRoot: "/d",
				LiveRestore: ptr(true), LogOpts: map[string]string{"max-size": "10m"}, InsecureRegistry: []string{"r:5000"}, RegistryMirror: "http://192.0.2.2"}}}},
		{"engine environment as a map", "rancher:\n  system_docker:\n    environment: {A: b}", Config{Rancher: Rancher{SystemDocker: Engine{Environment: []string{"A=b"}}}}},
		{"network", "rancher:\n  network:\n    dhcp_timeout: 20\n    http_proxy: http://192.0.2.3:3128\n    pre_cmds: [a]\n    dns: {nameservers: [192.0.2.53], search: [example.com]}\n    interfaces:\n      eth0: {address: 192.0.2.10/24, gateway: 192.0.2.1, mtu: 1500, dhcp: false}\n      br0: {vlans: 100}\n      bond0: {bond_opts: {mode: 1}}",
			Config{Rancher: Rancher{Network: netconf.Config{DHCPTimeout: 20, HTTPProxy: "http://192.0.2.3:3128", PreCmds: []string{"a"},
				DNS: netconf.DNSConfig{Nameservers: []string{"192.0.2.53"}, Search: []string{"example.com"}},
				Interfaces: map[string]netconf.InterfaceConfig{
					"eth0":  {Address: "192.0.2.10/24", Gateway: "192.0.2.1", MTU: 1500, DHCP: ptr(false)},
					"br0":   {Vlans: "100"},
					"bond0": {BondOpts: map[string]string{"mode": "1"}},
				}}}}},
		{"service", "rancher:\n  services:\n    env:\n      image: busybox\n      command: sh -c 'echo \"a b\"'\n      entrypoint: [/bin/x]\n      environment: [A, B*]\n      labels: {io.rancher.os.scope: system}\n      net: host\n      privileged: true\n      restart: on-failure:3\n      volumes: [/a:/a]\n      ports: [\"80:80\"]\n      ulimits: {nofile: {soft: 1024, hard: 2048}}",
			Config{Rancher: Rancher{Services: map[string]*Service{"env": {Image: "busybox", Command: []string{"sh", "-c", `echo "a b"`}, Entrypoint: []string{"/bin/x"},
				Environment: []string{"A", "B*"}, Labels: map[string]string{"io.rancher.os.scope": "system"}, Net: "host", Privileged: true, Restart: "on-failure:3",
				Volumes: []string{"/a:/a"}, Ports: []string{"80:80"}, Ulimits: map[string]string{"nofile": "1024:2048"}}}}}},
		{"service labels as a list and environment as a map", "rancher:\n  services:\n    s:\n      labels: [a=b, c]\n      environment: {X: y, Z: }",
			Config{Rancher: Rancher{Services: map[string]*Service{"s": {Labels: map[string]string{"a": "b", "c": ""}, Environment: []string{"X=y", "Z"}}}}}},
		{"empty service", "rancher:\n  services:\n    s:\n", Config{Rancher: Rancher{Services: map[string]*Service{"s": {}}}}},
		{"anchors and merge keys", "x: &e {image: busybox}\nrancher:\n  services:\n    a: *e\n    b:\n      <<: *e\n      net: host",
			Config{Rancher: Rancher{Services: map[string]*Service{"a": {Image: "busybox"}, "b": {Image: "busybox", Net: "host"}}}}},
		{"empty document", "", Config{}},
		{"comment only", "#cloud-config\n", Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep, err := Parse("test", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if rep.HasErrors() {
				t.Errorf("Parse reported errors:\n%s", rep)
			}
			if diff := cmp.Diff(&tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestParseReport: a bad value is reported at its line:column with its key
// path, and dropped; the rest of the document still counts.
func TestParseReport(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // report lines
		wantCfg Config
	}{
		{"int field", "hostname: h\nrancher:\n  network:\n    interfaces:\n      eth0:\n        mtu: abc\n        dhcp: true",
			[]string{`user-data:6:14: rancher.network.interfaces.eth0.mtu: want an integer, got "abc"`},
			Config{Hostname: "h", Rancher: Rancher{Network: netconf.Config{Interfaces: map[string]netconf.InterfaceConfig{"eth0": {DHCP: ptr(true)}}}}}},
		{"bool field", "rancher:\n  debug: maybe", []string{`user-data:2:10: rancher.debug: want true or false, got "maybe"`}, Config{}},
		{"map where a string goes", "hostname: {a: b}", []string{`user-data:1:11: hostname: want a string, got a mapping`}, Config{}},
		{"list where a map goes", "rancher:\n  ssh: [a]", []string{`user-data:2:8: rancher.ssh: want a mapping, got a list`}, Config{}},
		{"unknown key is a warning", "rancher:\n  shiny: 1", []string{`user-data:2:3: rancher.shiny: warning: unknown key (ignored)`}, Config{}},
		{"bad list item dropped", "runcmd:\n- a\n- {b: c}\n- d", []string{`user-data:3:3: runcmd[1]: want a command line or an argv list, got a mapping`},
			Config{Runcmd: []Command{{Shell: "a"}, {Shell: "d"}}}},
		{"mount too long", "mounts:\n- [a, b, c, d, e, f, g]", []string{`user-data:2:3: mounts[0]: want 1 to 4 items [device, mountpoint, fstype, options], got 7`}, Config{}},
		{"mtu out of range", "rancher:\n  network:\n    interfaces:\n      eth0: {mtu: 10}", []string{`user-data:4:19: rancher.network.interfaces.eth0.mtu: 10 is outside 68..65535`}, ifaces("eth0")},
		{"address without prefix", "rancher:\n  network:\n    interfaces:\n      eth0:\n        address: 192.0.2.5",
			[]string{`user-data:5:18: rancher.network.interfaces.eth0.address: "192.0.2.5" has no prefix length`}, ifaces("eth0")},
		{"bad bond mode", "rancher:\n  network:\n    interfaces:\n      bond0:\n        bond_opts: {mode: fastest}",
			[]string{`user-data:5:27: rancher.network.interfaces.bond0.bond_opts.mode: unknown bond mode "fastest"`}, ifaces("bond0")},
		{"permissions not octal", "write_files:\n- path: /x\n  permissions: \"0999\"",
			[]string{`user-data:3:16: write_files[0].permissions: want octal permissions such as "0644", got "0999"`}, Config{WriteFiles: []WriteFile{{Path: "/x"}}}},
		{"unknown encoding", "write_files:\n- path: /x\n  encoding: rot13",
			[]string{`user-data:3:13: write_files[0].encoding: unknown encoding "rot13" (want one of b64, base64, gz, gzip, gz+b64, gzip+base64)`}, Config{WriteFiles: []WriteFile{{Path: "/x"}}}},
		{"relative write_files path", "write_files:\n- path: etc/x", []string{`user-data:2:9: write_files[0].path: want an absolute path, got "etc/x"`}, Config{}},
		{"two bad list items drop the right parts", "write_files:\n- path: rel\n- path: /ok\n  permissions: \"9\"\n- path: /x\n  encoding: rot13",
			[]string{
				`user-data:2:9: write_files[0].path: want an absolute path, got "rel"`,
				`user-data:4:16: write_files[1].permissions: want octal permissions such as "0644", got "9"`,
				`user-data:6:13: write_files[2].encoding: unknown encoding "rot13" (want one of b64, base64, gz, gzip, gz+b64, gzip+base64)`,
			},
			Config{WriteFiles: []WriteFile{{Path: "/ok"}, {Path: "/x"}}}},
		{"unknown datasource", "rancher:\n  cloud_init:\n    datasources: [ec2, azurex]",
			[]string{`user-data:3:24: rancher.cloud_init.datasources[1]: unknown datasource type "azurex"`}, Config{Rancher: Rancher{CloudInit: CloudInit{Datasources: []string{"ec2"}}}}},
		{"url datasource needs a location", "rancher:\n  cloud_init:\n    datasources: [url]",
			[]string{`user-data:3:19: rancher.cloud_init.datasources[0]: datasource url needs an argument (url:LOCATION)`}, Config{}},
		{"restart policy", "rancher:\n  services:\n    s:\n      restart: sometimes",
			[]string{`user-data:4:16: rancher.services.s.restart: want a restart policy (no, always, on-failure[:N], unless-stopped), got "sometimes"`},
			Config{Rancher: Rancher{Services: map[string]*Service{"s": {}}}}},
		{"bad port", "rancher:\n  services:\n    s:\n      ports: [\"80:99999\"]",
			[]string{`user-data:4:15: rancher.services.s.ports[0]: want a port 1-65535 in "80:99999", got "99999"`},
			Config{Rancher: Rancher{Services: map[string]*Service{"s": {}}}}},
		{"bad zram size", "rancher:\n  zram: {size: lots}", []string{`user-data:2:16: rancher.zram.size: zram size "lots": want auto, 0, a size (128M, 1G) or a percentage of the RAM (50%)`}, Config{}},
		{"ssh port", "rancher:\n  ssh: {port: 70000}", []string{`user-data:2:15: rancher.ssh.port: want a port 1-65535, got 70000`}, Config{}},
		{"bad hostname", "hostname: a_b", []string{`user-data:1:11: hostname: "a_b" is not a valid hostname`}, Config{}},
		{"unterminated quote in a service command", "rancher:\n  services:\n    s:\n      command: echo 'a",
			[]string{`user-data:4:16: rancher.services.s.command: unterminated ' quote`}, Config{Rancher: Rancher{Services: map[string]*Service{"s": {}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep, err := Parse("user-data", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(rep.String()), "\n")
			if diff := cmp.Diff(tt.want, lines); diff != "" {
				t.Errorf("Parse(%q) report mismatch (-want +got):\n%s", tt.in, diff)
			}
			if diff := cmp.Diff(&tt.wantCfg, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%q) config mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestParseFatal: only input that is not a YAML mapping fails Parse, and
// the error says where.
func TestParseFatal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a: [\n", "user-data:1: did not find expected node content"},
		{"- a\n- b\n", `user-data:1:1: the top level must be a mapping, got a list`},
		{"just text", `user-data:1:1: the top level must be a mapping, got "just text"`},
		{"a: &x [*x]", "user-data"},
		// yaml.v3 gives these one line early: the line is where the list
		// or map that is not closed (or is misindented) begins.
		{"#cloud-config\nhostname: [unclosed\nwrite_files: {\n", "user-data:2: did not find expected ',' or ']' (a [ list that begins here is not closed)"},
		{"#cloud-config\n\n\nkey: [a, b\n", "user-data:4: did not find expected ',' or ']'"},
		{"#cloud-config\nx: 1\nw: {a: 1\n", "user-data:3: did not find expected ',' or '}' (a { map that begins here is not closed)"},
		{"a: {b: 1\n", "user-data:1: did not find expected ',' or '}'"},
		{"#cloud-config\nrancher:\n  a: 1\n b: 2\n", "user-data:2: did not find expected key (the map that begins here has a key indented wrongly below)"},
		{"#cloud-config\nx:\n  - a\n  - b\n  c: 1\n", "user-data:3: did not find expected '-' indicator"},
		{"#cloud-config\na: !foo!bar x\n", "user-data:2: found undefined tag handle"},
	}
	for _, tt := range tests {
		_, _, err := Parse("user-data", []byte(tt.in))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v, want prefix %q", tt.in, err, tt.want)
		}
	}
}

// TestAliasBomb: exponential aliases are refused, not expanded.
func TestAliasBomb(t *testing.T) {
	in := "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
	prev := "a"
	for i := 0; i < 9; i++ {
		name := string(rune('b' + i))
		in += name + ": &" + name + " [" + strings.Repeat("*"+prev+",", 9) + "*" + prev + "]\n"
		prev = name
	}
	_, _, err := Parse("bomb", []byte(in))
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("Parse(alias bomb) error = %v, want too large", err)
	}
}

// ifaces is a Config with empty network interfaces of these names.
func ifaces(names ...string) Config {
	m := map[string]netconf.InterfaceConfig{}
	for _, n := range names {
		m[n] = netconf.InterfaceConfig{}
	}
	return Config{Rancher: Rancher{Network: netconf.Config{Interfaces: m}}}
}

func TestSplitShell(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"env", []string{"env"}},
		{`sh -c "echo \"hi\" there"`, []string{"sh", "-c", `echo "hi" there`}},
		{`a 'b c' d\ e ""`, []string{"a", "b c", "d e", ""}},
		{"  ", nil},
	}
	for _, tt := range tests {
		got, err := splitShell(tt.in)
		if err != nil {
			t.Errorf("splitShell(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("splitShell(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

// TestManyProblems: thousands of bad items are each reported and dropped
// without quadratic work (this took seconds before removal was by identity).
func TestManyProblems(t *testing.T) {
	const n = 20000
	in := "rancher:\n  cloud_init:\n    datasources:\n" + strings.Repeat("    - nope\n    - ec2\n", n)
	cfg, rep, err := Parse("big", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rep.Errors()); got != n {
		t.Errorf("errors = %d, want %d", got, n)
	}
	if got := len(cfg.Rancher.CloudInit.Datasources); got != n {
		t.Errorf("datasources kept = %d, want %d", got, n)
	}
}

// rancher.zram.size: auto gives half the RAM only to small machines; a
// size, a share or 0 is what it says.
func TestZramBytes(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		size     string
		memTotal int64
		want     int64
	}{
		{"", 331 * mib, 165*mib + mib/2},
		{"auto", 480 * mib, 240 * mib},
		{"auto", 970 * mib, 0},
		{"0", 331 * mib, 0},
		{"128M", 970 * mib, 128 * mib},
		{"1G", 331 * mib, 1 << 30},
		{"65536k", 331 * mib, 64 * mib},
		{"4096", 331 * mib, 4096},
		{"25%", 400 * mib, 100 * mib},
	}
	for _, tt := range tests {
		got, err := Zram{Size: tt.size}.Bytes(tt.memTotal)
		if err != nil || got != tt.want {
			t.Errorf("Zram{%q}.Bytes(%d MiB) = %d, %v; want %d", tt.size, tt.memTotal/mib, got, err, tt.want)
		}
	}
	for _, bad := range []string{"lots", "-1M", "500%", "M", "1.5G"} {
		if _, err := (Zram{Size: bad}).Bytes(331 * mib); err == nil {
			t.Errorf("Zram{%q}.Bytes: no error", bad)
		}
	}
}
