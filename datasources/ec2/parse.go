package ec2

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/netconf"
)

// Tree is IMDS metadata as fetched: paths under /latest/meta-data/ (a
// directory path ends in "/") to their bodies.
type Tree map[string]string

// macFields are read for each network interface.
var macFields = []string{"device-number", "local-ipv4s", "subnet-ipv4-cidr-block", "ipv6s", "subnet-ipv6-cidr-blocks"}

// Parse turns fetched metadata into Metadata and the network of every
// interface (keyed mac=<address>, DHCP on, secondary IPv4 and all IPv6
// addresses static with their subnet's prefix).
func Parse(t Tree) (cloudinit.Metadata, *netconf.Config, error) {
	m := cloudinit.Metadata{
		InstanceID:    strings.TrimSpace(t["instance-id"]),
		Hostname:      strings.TrimSpace(t["hostname"]),
		LocalHostname: strings.TrimSpace(t["local-hostname"]),
		PrivateIPv4:   strings.TrimSpace(t["local-ipv4"]),
		PublicIPv4:    strings.TrimSpace(t["public-ipv4"]),
		Zone:          strings.TrimSpace(t["placement/availability-zone"]),
		Region:        strings.TrimSpace(t["placement/region"]),
	}
	if m.InstanceID == "" {
		return m, nil, fmt.Errorf("parse metadata: no instance-id")
	}
	if v6 := lines(t["ipv6"]); len(v6) > 0 {
		m.PrivateIPv6 = v6[0]
	}
	for _, line := range lines(t["public-keys/"]) {
		idx := keyIndex(line)
		for _, k := range strings.Split(t["public-keys/"+idx+"/openssh-key"], "\n") {
			if k = strings.TrimSpace(k); k != "" && !slices.Contains(m.SSHPublicKeys, k) {
				m.SSHPublicKeys = append(m.SSHPublicKeys, k)
			}
		}
	}
	macs := lines(t["network/interfaces/macs/"])
	if len(macs) == 0 {
		return m, nil, nil
	}
	cfg := &netconf.Config{Interfaces: map[string]netconf.InterfaceConfig{}}
	yes := true
	sort.Strings(macs)
	for _, mac := range macs {
		mac = strings.TrimSuffix(mac, "/")
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return m, nil, fmt.Errorf("parse metadata: interface %q: %w", mac, err)
		}
		p := "network/interfaces/macs/" + mac + "/"
		ic := netconf.InterfaceConfig{DHCP: &yes}
		v4 := lines(t[p+"local-ipv4s"])
		if len(v4) > 1 {
			plen, err := prefixLen(t[p+"subnet-ipv4-cidr-block"])
			if err != nil {
				return m, nil, fmt.Errorf("parse metadata: interface %s: %w", mac, err)
			}
			for _, a := range v4[1:] {
				ic.Addresses = append(ic.Addresses, a+"/"+strconv.Itoa(plen))
			}
		}
		if v6 := lines(t[p+"ipv6s"]); len(v6) > 0 {
			plen, err := prefixLen(firstLine(t[p+"subnet-ipv6-cidr-blocks"]))
			if err != nil {
				return m, nil, fmt.Errorf("parse metadata: interface %s: %w", mac, err)
			}
			for _, a := range v6 {
				ic.Addresses = append(ic.Addresses, a+"/"+strconv.Itoa(plen))
			}
		}
		cfg.Interfaces["mac="+hw.String()] = ic
	}
	return m, cfg, nil
}

func firstLine(s string) string {
	if l := lines(s); len(l) > 0 {
		return l[0]
	}
	return ""
}

func prefixLen(cidr string) (int, error) {
	_, n, err := net.ParseCIDR(strings.TrimSpace(cidr))
	if err != nil {
		return 0, fmt.Errorf("subnet %q: %w", cidr, err)
	}
	ones, _ := n.Mask.Size()
	return ones, nil
}

// keyIndex is the index in a public-keys/ listing line: "0=name" on EC2,
// "0/" on some emulators.
func keyIndex(line string) string {
	idx, _, _ := strings.Cut(line, "=")
	return strings.TrimSuffix(idx, "/")
}
