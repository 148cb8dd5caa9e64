package cloudinit

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/berthos/berth/netconf"
)

// TestParseCmdline runs realistic RancherOS kernel command lines.
func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    Config
	}{
		{"rancheros iso defaults",
			"BOOT_IMAGE=/boot/vmlinuz-4.14.138-rancher initrd=/boot/initrd-v1.5.8 console=tty1 rancher.autologin=tty1 console=ttyS0 rancher.autologin=ttyS0 printk.devkmsg=on rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait panic=10",
			Config{Rancher: Rancher{Autologin: "ttyS0", State: State{Dev: "LABEL=RANCHER_STATE", Wait: true}}}},
		{"datasources list", "rancher.cloud_init.datasources=[ec2,gce]",
			Config{Rancher: Rancher{CloudInit: CloudInit{Datasources: []string{"ec2", "gce"}}}}},
		{"single datasource becomes a list", "rancher.cloud_init.datasources=configdrive:/dev/sr0",
			Config{Rancher: Rancher{CloudInit: CloudInit{Datasources: []string{"configdrive:/dev/sr0"}}}}},
		{"quoted value keeps spaces and colons", `"rancher.environment.GREETING=hello world: yes" rancher.password="a b:c"`,
			Config{Rancher: Rancher{Environment: map[string]string{"GREETING": "hello world: yes"}, Password: "a b:c"}}},
		{"quoted number stays a string", `rancher.environment.PORT="8080"`,
			Config{Rancher: Rancher{Environment: map[string]string{"PORT": "8080"}}}},
		{"ints and bools", "rancher.network.dhcp_timeout=30 rancher.debug=true rancher.ssh.daemon=false rancher.shutdown_timeout=5",
			Config{Rancher: Rancher{Network: netconf.Config{DHCPTimeout: 30}, Debug: true, SSH: SSH{Daemon: ptr(false)}, ShutdownTimeout: 5}}},
		{"bare key is true", "rancher.debug rancher.log",
			Config{Rancher: Rancher{Debug: true, Log: true}}},
		{"args after -- count", "console=ttyS0 -- rancher.debug rancher.password=x",
			Config{Rancher: Rancher{Debug: true, Password: "x"}}},
		{"last repeat wins", "rancher.password=a rancher.password=b",
			Config{Rancher: Rancher{Password: "b"}}},
		{"cc. is top level", "cc.hostname=node1 cc.ssh_authorized_keys=[ssh-ed25519]",
			Config{Hostname: "node1", SSHAuthorizedKeys: []string{"ssh-ed25519"}}},
		{"dotted sysctl key", "rancher.sysctl.net.ipv4.ip_forward=1",
			Config{Rancher: Rancher{Sysctl: map[string]string{"net.ipv4.ip_forward": "1"}}}},
		{"interface name with a dot", "rancher.network.interfaces.eth1.100.mtu=1400 rancher.network.interfaces.eth0.address=192.0.2.4/24",
			Config{Rancher: Rancher{Network: netconf.Config{Interfaces: map[string]netconf.InterfaceConfig{"eth1.100": {MTU: 1400}, "eth0": {Address: "192.0.2.4/24"}}}}}},
		{"empty list", "rancher.modules=[]", Config{}},
		{"list of ints into strings", "rancher.docker.extra_args=[--mtu,1400]",
			Config{Rancher: Rancher{Docker: Engine{ExtraArgs: []string{"--mtu", "1400"}}}}},
		{"non-config args ignored", "root=/dev/sda1 ro quiet rancherfoo=1 rancher= cc. rancher..x=1", Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rep := ParseCmdline(tt.cmdline)
			if rep.HasErrors() {
				t.Errorf("ParseCmdline(%q) errors:\n%s", tt.cmdline, rep)
			}
			if diff := cmp.Diff(&tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ParseCmdline(%q) mismatch (-want +got):\n%s", tt.cmdline, diff)
			}
		})
	}
}

func TestParseCmdlineReport(t *testing.T) {
	_, rep := ParseCmdline("console=ttyS0 rancher.network.dhcp_timeout=abc rancher.bogus=1")
	want := []string{
		`cmdline:1:15: rancher.network.dhcp_timeout: want an integer, got "abc"`,
		`cmdline:1:48: rancher.bogus: warning: unknown key (ignored)`,
	}
	got := strings.Split(strings.TrimSpace(rep.String()), "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseCmdline report mismatch (-want +got):\n%s", diff)
	}
}

func TestCmdlineValue(t *testing.T) {
	const cl = `console=ttyS0 cloud-config-url=http://192.0.2.1/a quiet -- cloud-config-url="http://192.0.2.1/b c"`
	tests := []struct {
		key   string
		want  string
		found bool
	}{
		{"cloud-config-url", "http://192.0.2.1/b c", true},
		{"console", "ttyS0", true},
		{"quiet", "", true},
		{"missing", "", false},
		{"--", "", false},
	}
	for _, tt := range tests {
		got, found := CmdlineValue(cl, tt.key)
		if got != tt.want || found != tt.found {
			t.Errorf("CmdlineValue(%q) = %q, %v, want %q, %v", tt.key, got, found, tt.want, tt.found)
		}
	}
}
