//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthos/berth/datasources/fake"
)

// checks is what every boot case verifies once the ready line came.
type checks struct {
	hostname string // exact, or a prefix ending in "*"
	source   string // what `ros datasource explain` must name
	key      string // private key whose public half came from the datasource
}

func (c checks) run(t *testing.T, vm *VM) {
	t.Run("hostname", func(t *testing.T) {
		got := vm.MustConsole("hostname")
		if p, ok := strings.CutSuffix(c.hostname, "*"); ok && strings.HasPrefix(got, p) {
			return
		}
		if got != c.hostname {
			t.Errorf("hostname = %q, want %q", got, c.hostname)
		}
	})
	t.Run("datasource explain", func(t *testing.T) {
		got, code, err := vm.Console("ros datasource explain", time.Minute)
		if err != nil || code != 0 || !strings.Contains(got, c.source) {
			t.Errorf("ros datasource explain: exit %d, %v: %q, want it to name %s", code, err, got, c.source)
		}
	})
	t.Run("write_files", func(t *testing.T) {
		out, code, err := vm.Console("for i in $(seq 90); do [ -f /var/lib/rancher/e2e-written ] && break; sleep 1; done; cat /var/lib/rancher/e2e-written", 2*time.Minute)
		if err != nil || code != 0 || out != "written by write_files" {
			t.Errorf("write_files: exit %d, %v: %q", code, err, out)
		}
	})
	t.Run("write_files into containers", func(t *testing.T) {
		// ntp starts once User Docker answers: wait for its container.
		out, code, err := vm.Console("for i in $(seq 120); do system-docker inspect ntp >/dev/null 2>&1 && break; sleep 1; done; "+
			"system-docker exec console stat -c %a /etc/e2e-in-console; system-docker exec console cat /etc/e2e-in-console; system-docker exec ntp cat /etc/e2e-in-ntp; "+
			"[ -e /etc/e2e-in-console ] || [ -e /etc/e2e-in-ntp ] && echo ON-HOST; true", 3*time.Minute)
		if want := "600\nin the console\nin ntp"; err != nil || code != 0 || out != want {
			t.Errorf("files with container: console and ntp: exit %d, %v: %q, want %q (in the containers, not on the host)", code, err, out, want)
		}
	})
	t.Run("ssh key", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if _, err := vm.SSH(ctx, c.key, "true", 3*time.Minute); err != nil {
			t.Errorf("%v", err)
		}
	})
	t.Run("system services", func(t *testing.T) {
		out, code, err := vm.Console("system-docker ps --format '{{.Names}}'", time.Minute)
		if err != nil || code != 0 {
			t.Fatalf("system-docker ps: exit %d, %v: %s", code, err, out)
		}
		for _, want := range []string{"console", "docker"} {
			if !strings.Contains(out, want) {
				t.Errorf("system-docker ps = %q, want a %s service", out, want)
			}
		}
	})
	engineChecks(t, vm)
}

// userData is the cloud-config of the datasource cases: an SSH key, a
// file, and runcmd entries that fetch busybox from preloadURL for User
// Docker.
func userData(pub, preloadURL string) string {
	return fmt.Sprintf(`#cloud-config
ssh_authorized_keys:
  - %s
write_files:
  - path: /var/lib/rancher/e2e-written
    content: |
      written by write_files
  - path: /etc/e2e-in-console
    container: console
    permissions: "0600"
    content: |
      in the console
  - path: /etc/e2e-in-ntp
    container: ntp
    content: |
      in ntp
%s`, pub, e2eDNS) + preloadRuncmd(preloadURL)
}

// e2eDNS names a nameserver in user-data: with restrict=on qemu's DHCP
// gives no DNS server, and containers must get what the machine has.
const e2eDNS = `rancher:
  network:
    dns:
      nameservers: [192.0.2.53]
`

// preloadAt is where the busybox tarball is served on the metadata
// network (169.254.0.0/16) of the EC2 and GCE cases.
const preloadAt = "169.254.0.100"

// metadataNet puts the guest on 169.254.0.0/16 so that the fake metadata
// server answers at the real 169.254.169.254.
const metadataNet = "net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15"

// TestEC2 boots as an EC2 instance: DMI says Amazon EC2, the fake IMDS
// (IMDSv2 tokens required) answers at 169.254.169.254; ends with the ACPI
// power button.
func TestEC2(t *testing.T) {
	img := image(t)
	key, pub := sshKey(t)
	fwd := preloadServer(t, preloadAt, "")
	imds := &fake.EC2{UserData: []byte(userData(pub, preloadURL(preloadAt))), Meta: fake.EC2Meta(), RequireToken: true}
	vm := Boot(t, img, VMConfig{
		Net:     metadataNet + "," + serveAt(t, "169.254.169.254", imds) + "," + fwd,
		Cmdline: "rancher.cloud_init.datasources=[ec2]",
		Args:    []string{"-smbios", "type=1,manufacturer=Amazon EC2,product=t3.micro,serial=ec2e2e"},
	})
	ready := vm.WaitReady(bootTimeout)
	logTimeline(t, vm, ready)
	checks{hostname: "ip-192-0-2-10*", source: "ec2", key: key}.run(t, vm)
	t.Run("ACPI power button ends qemu", func(t *testing.T) {
		if err := vm.Monitor("system_powerdown"); err != nil {
			t.Fatal(err)
		}
		if err := vm.WaitExit(2 * time.Minute); err != nil {
			t.Errorf("system_powerdown: %v", err)
		}
	})
}

// TestGCE boots as a GCE instance: DMI says Google, the fake metadata
// server (Metadata-Flavor checked) answers at 169.254.169.254.
func TestGCE(t *testing.T) {
	img := image(t)
	key, pub := sshKey(t)
	meta := fake.GCEMeta()
	fwd := preloadServer(t, preloadAt, "")
	meta["instance/attributes/user-data"] = userData(pub, preloadURL(preloadAt))
	vm := Boot(t, img, VMConfig{
		Net:     metadataNet + "," + serveAt(t, "169.254.169.254", &fake.GCE{Meta: meta}) + "," + fwd,
		Cmdline: "rancher.cloud_init.datasources=[gce]",
		Args:    []string{"-smbios", "type=1,manufacturer=Google,product=Google Compute Engine"},
	})
	ready := vm.WaitReady(bootTimeout)
	logTimeline(t, vm, ready)
	checks{hostname: "berth-1*", source: "gce", key: key}.run(t, vm)
}

// TestStateDisk boots twice with one blank disk: the first boot formats
// it (its first MiB is zero) and writes to a persistent path, the second
// finds it by label and still has the file.
func TestStateDisk(t *testing.T) {
	img := image(t)
	disk := filepath.Join(t.TempDir(), "state.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 512<<20); err != nil {
		t.Fatal(err)
	}
	// User Docker with TLS and no certificate in the config (RancherOS's
	// test_02 gave them inline): the first boot makes a CA, and a client
	// certificate signed by it still works after the reboot.
	// The host reaches User Docker's port 2376, as a remote client would.
	// The user-data is RancherOS's test_14: write_files puts three
	// cloud-config.d files on the state disk, and the boot that writes
	// them already takes the last one's hostname; a fourth file, not
	// YAML, is named in the log and changes nothing.
	tlsPort := freePort(t)
	cfg := VMConfig{Disk: disk,
		Cmdline: "rancher.state.autoformat=[/dev/vda] rancher.docker.tls=true " +
			"rancher.cloud_init.datasources=[cmdline] cloud-config-url=http://10.0.2.100/user-data",
		Net: serve(t, cloudConfigD+brokenConfigD) + fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:2376", tlsPort)}

	vm := Boot(t, img, cfg)
	ready := vm.WaitReady(bootTimeout)
	logTimeline(t, vm, ready)
	if _, _, err := vm.WaitLine(regexp.MustCompile(`formatted blank /dev/vda`), 0, time.Second); err != nil {
		t.Errorf("first boot: %v", err)
	}
	t.Run("cloud-config.d files from write_files, the same boot (RancherOS test_14)", func(t *testing.T) {
		if _, _, err := vm.WaitLine(regexp.MustCompile(`write_files wrote .*cloud-config3\.yml.*zz-broken\.yml: this boot's config includes them`), 0, time.Second); err != nil {
			t.Errorf("first boot: %v", err)
		}
		// The file that is not YAML is named, with its line, and left out.
		if _, _, err := vm.WaitLine(regexp.MustCompile(`config error: /var/lib/rancher/conf/cloud-config\.d/zz-broken\.yml:\d+:\d+`), 0, time.Second); err != nil {
			t.Errorf("first boot: %v", err)
		}
		got := vm.MustConsole("hostname; stat -c %a /var/lib/rancher/conf/cloud-config.d/cloud-config*.yml; grep '^127.0.1.1' /etc/hosts")
		if want := "hostname3\n444\n444\n444\n127.0.1.1\thostname3"; got != want {
			t.Errorf("first boot: %q, want %q (the last file's hostname, the files' mode 0444, the hostname in /etc/hosts as netconf wrote it)", got, want)
		}
	})
	t.Run("User Docker over TLS", func(t *testing.T) {
		if _, _, err := vm.WaitLine(regexp.MustCompile(`rancher.docker.tls: made User Docker a server certificate for localhost, hostname3, .*10\.0\.2\.15`), 0, time.Second); err != nil {
			t.Errorf("first boot: %v", err)
		}
		out, code, err := vm.Console("ros tls gen -d /home/rancher/e2e-tls >/dev/null && "+dockerTLS, 2*time.Minute)
		if err != nil || code != 0 || !regexp.MustCompile(`^\d+\.\d+`).MatchString(out) {
			t.Errorf("docker --tlsverify -H tcp://10.0.2.15:2376 version: exit %d, %v: %q; want the server's version", code, err, out)
		}
		// Without a client certificate User Docker refuses the connection.
		out, code, err = vm.Console("docker --tlsverify --tlscacert=/home/rancher/e2e-tls/ca.pem -H tcp://10.0.2.15:2376 version --format '{{.Server.Version}}' 2>&1", time.Minute)
		if err != nil || code == 0 {
			t.Errorf("docker over TLS without a client certificate: exit %d, %v: %q; want a refusal", code, err, out)
		}
	})
	// The local config (above cloud-config.d) names the next boot's host.
	vm.MustConsole("echo kept > /var/lib/rancher/conf/e2e-kept && ros config set hostname e2e-second && sync")
	_, _, _ = vm.Console("poweroff", 10*time.Second)
	if err := vm.WaitExit(2 * time.Minute); err != nil {
		t.Fatalf("first boot: poweroff: %v", err)
	}

	vm2 := Boot(t, img, cfg)
	vm2.WaitReady(bootTimeout)
	if _, _, err := vm2.WaitLine(regexp.MustCompile(`state disk /dev/vda mounted`), 0, time.Second); err != nil {
		t.Errorf("second boot: %v", err)
	}
	if _, _, err := vm2.WaitLine(regexp.MustCompile(`formatted blank`), 0, time.Second); err == nil {
		t.Errorf("second boot formatted the state disk again")
	}
	if got := vm2.MustConsole("cat /var/lib/rancher/conf/e2e-kept"); got != "kept" {
		t.Errorf("second boot: /var/lib/rancher/conf/e2e-kept = %q, want %q", got, "kept")
	}
	t.Run("ros config set hostname from the first boot", func(t *testing.T) {
		got := vm2.MustConsole("hostname; stat -c %a /var/lib/rancher/conf/cloud-config.d/cloud-config*.yml")
		if want := "e2e-second\n444\n444\n444"; got != want {
			t.Errorf("second boot: %q, want %q (the local config's hostname over cloud-config.d's, the files' mode 0444)", got, want)
		}
	})
	t.Run("User Docker over TLS after the reboot, with the first boot's client certificate", func(t *testing.T) {
		// The hostname changed: a new server certificate names it, and
		// the old one's, signed by the CA the first boot kept.
		if _, _, err := vm2.WaitLine(regexp.MustCompile(`rancher.docker.tls: made User Docker a server certificate for localhost, e2e-second, .*signed by the CA kept in /var/lib/rancher/conf/docker-tls`), 0, time.Second); err != nil {
			t.Errorf("second boot: %v", err)
		}
		out, code, err := vm2.Console(dockerTLS, 2*time.Minute)
		if err != nil || code != 0 || !regexp.MustCompile(`^\d+\.\d+`).MatchString(out) {
			t.Errorf("docker --tlsverify -H tcp://10.0.2.15:2376 version: exit %d, %v: %q; want the server's version", code, err, out)
		}
	})
	t.Run("User Docker over TLS from the host", func(t *testing.T) {
		file := func(name string) []byte {
			return []byte(vm2.MustConsole("cat /home/rancher/e2e-tls/"+name) + "\n")
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(file("ca.pem")) {
			t.Fatal("ca.pem from the guest: no certificate")
		}
		cert, err := tls.X509KeyPair(file("cert.pem"), file("key.pem"))
		if err != nil {
			t.Fatalf("client certificate from the guest: %v", err)
		}
		url := fmt.Sprintf("https://127.0.0.1:%d/version", tlsPort)
		// The server certificate names localhost: the client checks it
		// against the machine's CA under that name.
		get := func(certs []tls.Certificate) (string, error) {
			c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: pool, Certificates: certs, ServerName: "localhost"}}}
			resp, err := c.Get(url)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			var v struct{ Version string }
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("%s: %v", resp.Status, err)
			}
			return v.Version, nil
		}
		if v, err := get([]tls.Certificate{cert}); err != nil || !regexp.MustCompile(`^\d+\.\d+`).MatchString(v) {
			t.Errorf("GET %s with the client certificate: %q, %v; want User Docker's version", url, v, err)
		}
		if v, err := get(nil); err == nil {
			t.Errorf("GET %s without a client certificate answered %q; want a refusal", url, v)
		}
	})
	_, _, _ = vm2.Console("poweroff", 10*time.Second)
	if err := vm2.WaitExit(2 * time.Minute); err != nil {
		t.Errorf("second boot: poweroff: %v", err)
	}
}

// cloudConfigD is RancherOS's test_14 cloud-config: three files into
// /var/lib/rancher/conf/cloud-config.d, read from the next boot on in
// name order.
const cloudConfigD = `#cloud-config
write_files:
  - path: /var/lib/rancher/conf/cloud-config.d/cloud-config1.yml
    permissions: "0444"
    owner: root
    content: |
      hostname: hostname1
      rancher:
        log: false
  - path: /var/lib/rancher/conf/cloud-config.d/cloud-config2.yml
    permissions: "0444"
    owner: root
    content: |
      hostname: hostname2
      rancher:
        debug: false
  - path: /var/lib/rancher/conf/cloud-config.d/cloud-config3.yml
    permissions: "0444"
    owner: root
    content: |
      hostname: hostname3
      rancher:
        log: true
`

// brokenConfigD is one more cloud-config.d file, after test_14's in name
// order and not YAML: the boot names it and goes on without it.
const brokenConfigD = `  - path: /var/lib/rancher/conf/cloud-config.d/zz-broken.yml
    content: |
      hostname: hostname-broken
      rancher: [
`

// dockerTLS asks User Docker for its version over TLS at the guest's
// address, with the client certificate in /home/rancher/e2e-tls.
const dockerTLS = "d=/home/rancher/e2e-tls; docker --tlsverify --tlscacert=$d/ca.pem --tlscert=$d/cert.pem --tlskey=$d/key.pem -H tcp://10.0.2.15:2376 version --format '{{.Server.Version}}' 2>&1"

// TestMalformedUserData boots with user-data that is not valid YAML, from
// a url: datasource named on the kernel command line (RancherOS's
// test_10 form): the machine still comes up to a console, and the error
// is in the log.
func TestMalformedUserData(t *testing.T) {
	img := image(t)
	fwd := serve(t, "#cloud-config\nhostname: [unclosed\nwrite_files: {\n")
	vm := Boot(t, img, VMConfig{
		Net:     fwd,
		Cmdline: "rancher.cloud_init.datasources=[url:http://10.0.2.100/user-data]",
	})
	vm.WaitReady(bootTimeout)
	// The error names the line: 2, where the [ that is never closed is.
	if _, _, err := vm.WaitLine(regexp.MustCompile(`decode user-data: user-data:2: did not find expected ',' or '\]'`), 0, time.Second); err != nil {
		t.Errorf("the user-data error is not on the console: %v", err)
	}
	if got := vm.MustConsole("echo console works"); got != "console works" {
		t.Errorf("console: %q", got)
	}
	if got, code, err := vm.Console("ros datasource explain", time.Minute); err != nil || code != 0 || !strings.Contains(got, "url:http://10.0.2.100/user-data") {
		t.Errorf("ros datasource explain: exit %d, %v: %q; want it to name url:http://10.0.2.100/user-data", code, err, got)
	}
}

// configDriveNetwork bonds the guest's two virtio NICs (active-backup),
// puts the slirp address on the bond and a VLAN on top of it.
const configDriveNetwork = `{
  "links": [
    {"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
    {"id": "eth1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02"},
    {"id": "bond0", "type": "bond", "bond_links": ["eth0", "eth1"], "bond_mode": "active-backup", "ethernet_mac_address": "52:54:00:00:00:01"},
    {"id": "vlan0", "type": "vlan", "vlan_link": "bond0", "vlan_id": 100, "vlan_mac_address": "52:54:00:00:00:01"}
  ],
  "networks": [
    {"id": "net0", "type": "ipv4", "link": "bond0", "ip_address": "10.0.2.15", "netmask": "255.255.255.0",
     "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.2.2"}]},
    {"id": "net1", "type": "ipv4", "link": "vlan0", "ip_address": "192.0.2.30", "netmask": "255.255.255.0"}
  ]
}
`

// TestConfigDrive boots with an OpenStack config drive (ISO9660 labelled
// config-2 on the CD-ROM): user-data, and network_data.json with a bond of
// two NICs and a VLAN; SSH reaches the guest through the bond.
func TestConfigDrive(t *testing.T) {
	img := image(t)
	key, pub := sshKey(t)
	fwd := preloadServer(t, "10.0.2.100", "")
	files := fake.DriveFiles([]byte(userData(pub, preloadURL("10.0.2.100"))))
	files["openstack/latest/network_data.json"] = []byte(configDriveNetwork)
	iso := filepath.Join(t.TempDir(), "config-2.iso")
	if err := fake.BuildISO(iso, "config-2", files); err != nil {
		t.Fatalf("build config drive: %v", err)
	}
	vm := Boot(t, img, VMConfig{
		Net:          fwd,
		Cmdline:      "rancher.cloud_init.datasources=[configdrive]",
		NICMAC:       "52:54:00:00:00:01",
		SecondNICMAC: "52:54:00:00:00:02",
		Args:         []string{"-drive", "file=" + iso + ",media=cdrom,readonly=on"},
	})
	ready := vm.WaitReady(bootTimeout)
	logTimeline(t, vm, ready)
	checks{hostname: "berth-1*", source: "configdrive", key: key}.run(t, vm)
	t.Run("bond and VLAN from network_data.json", func(t *testing.T) {
		out := vm.MustConsole("ip -o -4 addr show; cat /proc/net/bonding/bond0 | grep -i 'slave interface'")
		for _, want := range []string{"bond0    inet 10.0.2.15/24", "inet 192.0.2.30/24", "Slave Interface: eth0", "Slave Interface: eth1"} {
			if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
				t.Errorf("network state:\n%s\nwant %q", out, want)
			}
		}
	})
}

// multiNIC is RancherOS's multi_nic cloud-config with its addresses in
// the documentation ranges: eth0 on DHCP, eth1 and eth2 static, each
// with a default gateway, and eth2 an IPv6 gateway but no IPv6 address.
// The hooks are its pre_cmds case's, inline: Berth applies the network
// on the host, before any container, so a script written into the
// network container would not be there to run.
const multiNIC = `#cloud-config
hostname: multinic
write_files:
- container: network
  path: /var/lib/iptables/rules.sh
  permissions: "0755"
  owner: root:root
  content: |
    #!/bin/sh
    set -e
    echo "$@" >> /var/log/e2e-net.log
- path: /var/lib/e2e/bash.sh
  permissions: "0755"
  content: |
    #!/bin/bash
    echo "the host has no bash"
- path: /etc/hosts
  content: |
    127.0.0.1 localhost
    198.51.100.7 e2e-written.example
rancher:
  network:
    pre_cmds: ["/var/lib/iptables/rules.sh pre_cmds"]
    post_cmds: ["/var/lib/iptables/rules.sh post_cmds"]
    interfaces:
      eth*:
        dhcp: true
      lo:
        pre_up: ["/var/lib/iptables/rules.sh pre_up $IFACE"]
        post_up: ["/var/lib/iptables/rules.sh post_up $IFACE"]
      eth0:
        dhcp: true
        pre_up: ["/var/lib/iptables/rules.sh pre_up $IFACE"]
        post_up: ["/var/lib/iptables/rules.sh post_up $IFACE"]
      "mac=52:54:00:12:34:59":
        address: 198.51.100.41/24
        gateway: 198.51.100.1
        mtu: 1500
        dhcp: false
      eth2:
        address: 203.0.113.85/24
        gateway: 203.0.113.1
        gateway_ipv6: "2001:db8:1234::"
        mtu: 1500
        dhcp: false
        pre_up: ["/var/lib/iptables/rules.sh pre_up $IFACE"]
        post_up: ["/var/lib/iptables/rules.sh post_up $IFACE"]
`

// multiNICMAC is eth1's MAC address, the key of its config (RancherOS's
// test_01: a mac= key beats the eth* glob).
const multiNICMAC = "52:54:00:12:34:59"

// TestMultiNIC boots three NICs, each on its own qemu user network whose
// gateway answers pings, with RancherOS's multi_nic config, eth1 chosen
// by its MAC address and the rest of eth* by DHCP (test_01); its network
// hooks run a script write_files puts in the network container, as
// RancherOS's pre_cmds case does (PID 1 runs the hooks, on the host, which
// gets the file too), and its write_files /etc/hosts replaces the one
// netconf writes.
func TestMultiNIC(t *testing.T) {
	img := image(t)
	fwd := serve(t, multiNIC)
	var nics []string
	for i, net := range []string{"198.51.100", "203.0.113"} {
		nics = append(nics,
			"-netdev", fmt.Sprintf("user,id=x%d,restrict=on,ipv6=off,net=%s.0/24,host=%s.1,dhcpstart=%s.200", i, net, net, net),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=x%d%s", i, macOpt(map[int]string{0: multiNICMAC}[i])))
	}
	vm := Boot(t, img, VMConfig{
		Net:     fwd,
		Cmdline: "rancher.cloud_init.datasources=[cmdline] cloud-config-url=http://10.0.2.100/user-data",
		Args:    nics,
	})
	ready := vm.WaitReady(bootTimeout)
	logTimeline(t, vm, ready)
	t.Run("addresses and mtu", func(t *testing.T) {
		out := vm.MustConsole("ip -o -4 addr show scope global | awk '$2 ~ /^eth/ {print $2, $4}'; cat /sys/class/net/eth1/mtu /sys/class/net/eth2/mtu")
		if want := "eth0 10.0.2.15/24\neth1 198.51.100.41/24\neth2 203.0.113.85/24\n1500\n1500"; out != want {
			t.Errorf("addresses and mtu:\n%s\nwant\n%s", out, want)
		}
		// qemu's DHCP with restrict=on names no router: eth0's lease
		// brings its address only.
		if out := vm.MustConsole("ros netconf status | grep '^eth0 '"); !strings.Contains(out, "10.0.2.15/24 (dhcp from 10.0.2.2, expires in") {
			t.Errorf("ros netconf status: %q; want eth0's address as a lease from 10.0.2.2", out)
		}
	})
	t.Run("no link the config did not ask for", func(t *testing.T) {
		// The bonding driver would make a bond0 of its own.
		if out := vm.MustConsole("ls /sys/class/net | grep -v -x -e lo -e 'eth[0-2]' -e docker0 -e bonding_masters; true"); out != "" {
			t.Errorf("links besides lo, eth0-2 and docker0: %q", out)
		}
	})
	t.Run("each gateway its own default route", func(t *testing.T) {
		out := vm.MustConsole("ros netconf status | grep '^  default '")
		var got []string
		for _, l := range strings.Split(out, "\n") {
			got = append(got, strings.Join(strings.Fields(l), " "))
		}
		for _, want := range []string{
			`^default via 198\.51\.100\.1 dev eth1 proto static metric 0$`,
			`^default via 203\.0\.113\.1 dev eth2 proto static metric 1$`,
			`^default via 2001:db8:1234:: dev eth2 proto static metric 1024 onlink$`,
		} {
			if !slices.ContainsFunc(got, regexp.MustCompile(want).MatchString) {
				t.Errorf("ros netconf status default routes:\n%s\nwant a line matching %s", strings.Join(got, "\n"), want)
			}
		}
		if l, _, err := vm.WaitLine(regexp.MustCompile(`configure eth\d`), 0, time.Second); err == nil {
			t.Errorf("the boot logged an error: %s", l.Text)
		}
	})
	t.Run("network hooks in order (RancherOS pre_cmds case)", func(t *testing.T) {
		// pre_up before each link is touched, post_up once every link
		// has its addresses and leases; each runs the script write_files
		// put in place before the network.
		want := "pre_cmds\npre_up eth0\npre_up eth2\npre_up lo\npost_up eth0\npost_up eth2\npost_up lo\npost_cmds"
		if got := vm.MustConsole("cat /var/log/e2e-net.log"); got != want {
			t.Errorf("/var/log/e2e-net.log:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("a write_files script for bash, which the host lacks, is warned of", func(t *testing.T) {
		if _, _, err := vm.WaitLine(regexp.MustCompile(`the script's interpreter is not on this machine.*path=/var/lib/e2e/bash.sh interpreter=/bin/bash`), 0, time.Second); err != nil {
			t.Error(err)
		}
	})
	t.Run("write_files /etc/hosts kept over netconf's", func(t *testing.T) {
		if out := vm.MustConsole("grep -c e2e-written.example /etc/hosts; true"); out != "1" {
			t.Errorf("grep -c e2e-written.example /etc/hosts = %q, want 1: write_files' /etc/hosts was replaced", out)
		}
	})
	t.Run("both static gateways answer", func(t *testing.T) {
		out, code, err := vm.Console("ping -c1 -W5 -I eth1 198.51.100.1 >/dev/null && ping -c1 -W5 -I eth2 203.0.113.1 >/dev/null && echo both", time.Minute)
		if err != nil || code != 0 || out != "both" {
			t.Errorf("ping the gateways of eth1 and eth2: exit %d, %v: %q", code, err, out)
		}
	})
}

// bootScripts is RancherOS's test_26 cloud-config: runcmd in its empty,
// argv and shell forms, the user-data script path, start.sh and rc.local
// (without a #! line, calling wait-for-docker). Its /usr/bin/test is
// /opt/e2e/test here (Berth's /usr is the read-only system image), and
// rc.local asks User Docker for its version instead of running nginx.
const bootScripts = `#cloud-config
write_files:
- path: /opt/e2e/test
  permissions: "0755"
  owner: root
  content: |
    #!/bin/sh
    touch /home/rancher/test1
- path: /opt/rancher/bin/start.sh
  permissions: "0755"
  owner: root
  content: |
    touch /home/rancher/test3
- path: /etc/rc.local
  permissions: "0755"
  owner: root
  content: |
    wait-for-docker
    docker version --format '{{.Server.Version}}' > /home/rancher/test6
- path: /var/lib/rancher/conf/cloud-config-script
  permissions: "0755"
  owner: root
  content: |
    #!/bin/sh
    touch /home/rancher/test4
runcmd:
- []
- [ /opt/e2e/test ]
- [ touch, /home/rancher/test2 ]
- echo "" > /home/rancher/test5
rancher:
  services_include:
    "http://config.berth.test/e2e-services.yml": true
    e2e-repo: true
    kernel-headers: true
  repositories:
    e2e:
      url: http://config.berth.test/repo
`

// e2eServices is the services file TestBootScripts includes by URL
// (RancherOS's test_19: services_include keyed by a URL).
const e2eServices = `e2e-included:
  image: berth/base:${VERSION}
  command: [sh, -c, "echo included from a URL"]
  net: none
  labels:
    io.rancher.os.detach: "false"
`

// TestBootScripts boots RancherOS's test_26: every file the runcmd forms
// and the boot scripts touch is there once the machine is up. Its
// cloud-config-url goes through the kernel command line's
// rancher.network.http_proxy: the host answers as a proxy that knows
// config.berth.test, a name (RFC 6761) that resolves nowhere. The
// user-data also includes a service by URL (test_19), fetched through the
// same proxy, which runs, one by name from a repository (RancherOS's
// rancher.repositories), which runs too, and test_22's kernel-headers,
// which that repository does not have, so Berth warns it has no service
// for it.
func TestBootScripts(t *testing.T) {
	img := image(t)
	fp := &fake.Proxy{Host: "config.berth.test", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/user-data":
			fmt.Fprint(w, bootScripts)
		case "/e2e-services.yml":
			fmt.Fprint(w, e2eServices)
		case "/e2e-enabled.yml":
			fmt.Fprint(w, strings.ReplaceAll(strings.ReplaceAll(e2eServices, "e2e-included", "e2e-enabled"), "included from", "enabled from"))
		case "/repo/e/e2e-repo.yml":
			fmt.Fprint(w, strings.ReplaceAll(strings.ReplaceAll(e2eServices, "e2e-included", "e2e-repo"), "from a URL", "from a repository"))
		case "/repo/index.yml":
			fmt.Fprint(w, "services: [e2e-named, e2e-repo]\n")
		case "/repo/e/e2e-named.yml":
			fmt.Fprint(w, strings.ReplaceAll(strings.ReplaceAll(e2eServices, "e2e-included", "e2e-named"), "included from a URL", "enabled from a repository"))
		default:
			http.NotFound(w, r)
		}
	})}
	proxy := serveAt(t, "10.0.2.100", fp)
	vm := Boot(t, img, VMConfig{
		Net:     proxy,
		Cmdline: "rancher.cloud_init.datasources=[cmdline] cloud-config-url=http://config.berth.test/user-data rancher.network.http_proxy=http://10.0.2.100",
	})
	ready := vm.WaitReady(bootTimeout)
	logTimeline(t, vm, ready)
	if got := fp.Asked(); !slices.Contains(got, "http://config.berth.test/user-data") {
		t.Errorf("the proxy was asked for %q, want http://config.berth.test/user-data", got)
	}
	if _, _, err := vm.WaitLine(regexp.MustCompile(`datasources: URLs fetched through http_proxy=http://10\.0\.2\.100`), 0, time.Second); err != nil {
		t.Errorf("console: %v", err)
	}
	t.Run("services_include URL", func(t *testing.T) {
		if _, _, err := vm.WaitLine(regexp.MustCompile(`services_include http://config\.berth\.test/e2e-services\.yml: fetched, 1 services`), 0, time.Second); err != nil {
			t.Errorf("console: %v", err)
		}
		if _, _, err := vm.WaitLine(regexp.MustCompile(`services_include e2e-repo: fetched from http://config\.berth\.test/repo/e/e2e-repo\.yml, 1 services`), 0, time.Second); err != nil {
			t.Errorf("console: %v", err)
		}
		// test_22's name, which RancherOS fetched from its repository;
		// this one does not have it.
		for _, re := range []string{
			`services_include kernel-headers: no repository of rancher\.repositories has it \(GET http://config\.berth\.test/repo/k/kernel-headers\.yml: HTTP 404`,
			`services_include: no service of that name is defined here or in rancher\.repositories.*name=kernel-headers`,
		} {
			if _, _, err := vm.WaitLine(regexp.MustCompile(re), 0, time.Second); err != nil {
				t.Errorf("console: %v", err)
			}
		}
		if got := fp.Asked(); !slices.Contains(got, "http://config.berth.test/e2e-services.yml") {
			t.Errorf("the proxy was asked for %q, want the services file too", got)
		}
		out, code, err := vm.Console("for s in e2e-included e2e-repo; do for i in $(seq 60); do system-docker logs $s 2>&1 | grep -q . && break; sleep 1; done; system-docker logs $s; done; ros service list | grep -cE '^(e2e-included|e2e-repo) '; "+
			"ros service list | grep '^e2e-named ' | tr -s ' '", 2*time.Minute)
		if want := "included from a URL\nincluded from a repository\n2\ne2e-named - false in repository e2e 0 -"; err != nil || code != 0 || out != want {
			t.Errorf("the included services: exit %d, %v: %q; want %q (their output, one ros service list line each, and e2e-named from the repository's index)", code, err, out, want)
		}
		// ros service enable URL, from the console: fetched through the
		// kernel command line's proxy, then brought up.
		out, code, err = vm.Console("ros service enable http://config.berth.test/e2e-enabled.yml && ros service up e2e-enabled >/dev/null 2>&1 && "+
			"for i in $(seq 60); do system-docker logs e2e-enabled 2>&1 | grep -q . && break; sleep 1; done; system-docker logs e2e-enabled", 2*time.Minute)
		if want := "fetched http://config.berth.test/e2e-enabled.yml: 1 services\nhttp://config.berth.test/e2e-enabled.yml enabled; its services change at the next boot or with `ros service up`\nenabled from a URL"; err != nil || code != 0 || out != want {
			t.Errorf("ros service enable URL: exit %d, %v: %q, want %q", code, err, out, want)
		}
		// ros service enable NAME, looked up in rancher.repositories.
		out, code, err = vm.Console("ros service enable e2e-named && ros service up e2e-named >/dev/null 2>&1 && "+
			"for i in $(seq 60); do system-docker logs e2e-named 2>&1 | grep -q . && break; sleep 1; done; system-docker logs e2e-named", 2*time.Minute)
		if want := "fetched e2e-named from http://config.berth.test/repo/e/e2e-named.yml: 1 services\ne2e-named enabled; it takes effect at the next boot or with `ros service up e2e-named`\nenabled from a repository"; err != nil || code != 0 || out != want {
			t.Errorf("ros service enable NAME: exit %d, %v: %q, want %q", code, err, out, want)
		}
	})
	out, code, err := vm.Console("cd /home/rancher; for i in $(seq 60); do [ -s test6 ] && break; sleep 1; done; ls -1 test1 test2 test3 test4 test5 test6 && cat test6", 2*time.Minute)
	if err != nil || code != 0 || !regexp.MustCompile(`^test1\ntest2\ntest3\ntest4\ntest5\ntest6\n\d+\.\d+`).MatchString(out) {
		t.Errorf("files of runcmd, the user-data script, start.sh and rc.local: exit %d, %v: %q; want test1-6, and User Docker's version from rc.local", code, err, out)
	}
	for _, re := range []string{`boot script done.*script=/opt/rancher/bin/start.sh`, `boot script done.*script=/etc/rc.local`} {
		if _, _, err := vm.WaitLine(regexp.MustCompile(re), 0, 10*time.Second); err != nil {
			t.Errorf("console: %v", err)
		}
	}
}
