package netconf

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
)

func ptr[T any](v T) *T { return &v }

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []Problem
	}{
		{name: "empty is valid", cfg: Config{}},
		{
			name: "static ok",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"eth0": {Address: "192.0.2.5/24", Gateway: "192.0.2.1", GatewayIPv6: "2001:db8::1", Addresses: []string{"2001:db8::5/64"}, MTU: 1500},
			}, DNS: DNSConfig{Nameservers: []string{"192.0.2.53"}}},
		},
		{
			name: "address without prefix length",
			cfg:  Config{Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.5"}}},
			want: []Problem{{"interfaces.eth0.address", `"192.0.2.5" has no prefix length`}},
		},
		{
			name: "addresses index",
			cfg:  Config{Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.5/24", Addresses: []string{"2001:db8::5/64", "nope"}}}},
			want: []Problem{{"interfaces.eth0.addresses[1]", `"nope" is not an address with a prefix length`}},
		},
		{
			name: "unknown bond mode and option",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"bond0": {BondOpts: map[string]string{"mode": "fastest", "colour": "blue", "miimon": "x"}},
				"eth0":  {Bond: "bond0"},
			}},
			want: []Problem{
				{"interfaces.bond0.bond_opts.colour", "unknown bond option"},
				{"interfaces.bond0.bond_opts.miimon", `"x" is not a non-negative integer`},
				{"interfaces.bond0.bond_opts.mode", `unknown bond mode "fastest"`},
			},
		},
		{
			name: "bad gateway, mtu, route, dns, vlan, mac",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"eth0":                  {Gateway: "2001:db8::1", GatewayIPv6: "192.0.2.1", MTU: 10, Routes: []Route{{Destination: "198.51.100.0", Gateway: "x"}}, Vlans: "100,5000"},
				"mac=zz:00:00:00:00:00": {},
			}, DNS: DNSConfig{Nameservers: []string{"dns.example"}}, DHCPTimeout: -1},
			want: []Problem{
				{"dhcp_timeout", "-1 is negative"},
				{"dns.nameservers[0]", `"dns.example" is not an IP address`},
				{"interfaces.eth0.gateway", `"2001:db8::1" is not an IPv4 address`},
				{"interfaces.eth0.gateway_ipv6", `"192.0.2.1" is not an IPv6 address`},
				{"interfaces.eth0.mtu", "10 is outside 68..65535"},
				{"interfaces.eth0.routes[0].destination", `"198.51.100.0" is not a CIDR prefix`},
				{"interfaces.eth0.routes[0].gateway", `"x" is not an IP address`},
				{"interfaces.eth0.vlans", `VLAN ID "5000" is not in 1..4094`},
				{"interfaces.mac=zz:00:00:00:00:00", `"zz:00:00:00:00:00" is not a MAC address`},
			},
		},
		{
			name: "bridge true on a glob, bond of itself",
			cfg:  Config{Interfaces: map[string]InterfaceConfig{"br*": {Bridge: "true"}, "bond0": {Bond: "bond0"}}},
			want: []Problem{
				{"interfaces.bond0.bond", "a link cannot be a slave of itself"},
				{"interfaces.br*.bridge", `bridge: true creates a bridge and needs a single link name as the key, not "br*"`},
			},
		},
		{
			name: "one name as bond and bridge",
			cfg:  Config{Interfaces: map[string]InterfaceConfig{"eth0": {Bond: "x0"}, "eth1": {Bridge: "x0"}}},
			want: []Problem{{"interfaces.eth0.bond", "x0 is a bridge (interfaces.eth1), not a bond"}},
		},
		{
			name: "VLAN names that clash",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"eth*": {Vlans: "100:mgmt"},
				"eth0": {Vlans: "200:br0"},
				"br0":  {Bridge: "true"},
			}},
			want: []Problem{
				{"interfaces.eth*.vlans", `VLAN name "mgmt" on "eth*", which can match several links; use an exact link name`},
				{"interfaces.eth0.vlans", `VLAN name "br0" is also a bridge`},
			},
		},
		{
			name: "route gateway of the other IP version",
			cfg:  Config{Interfaces: map[string]InterfaceConfig{"eth0": {Routes: []Route{{Destination: "203.0.113.0/24", Gateway: "2001:db8::1"}}}}},
			want: []Problem{{"interfaces.eth0.routes[0].gateway", `"2001:db8::1" is not of the same IP version as the destination "203.0.113.0/24"`}},
		},
		{
			name: "dhcp on a bond slave",
			cfg:  Config{Interfaces: map[string]InterfaceConfig{"eth0": {Bond: "bond0", DHCP: ptr(true)}}},
			want: []Problem{{"interfaces.eth0.dhcp", "a bond slave or bridge member cannot take a DHCP lease; configure its master"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.Validate()
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestMakePlan(t *testing.T) {
	links := []LinkInfo{
		{Name: "lo"},
		{Name: "eth0", MAC: "52:54:00:00:00:01"},
		{Name: "eth1", MAC: "52:54:00:00:00:02"},
		{Name: "eth2", MAC: "52:54:00:00:00:03"},
		{Name: "ens3", MAC: "52:54:00:00:00:04"},
	}
	tests := []struct {
		name string
		cfg  Config
		want []LinkPlan
	}{
		{
			name: "default is DHCP on eth*",
			cfg:  Config{},
			want: []LinkPlan{
				{Name: "eth0", Key: "eth*", DHCP: true},
				{Name: "eth1", Key: "eth*", DHCP: true},
				{Name: "eth2", Key: "eth*", DHCP: true},
			},
		},
		{
			name: "exact name beats glob, static means no DHCP, mac= matches",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"eth*":                  {DHCP: ptr(true)},
				"eth1":                  {Address: "192.0.2.5/24", Gateway: "192.0.2.1", Routes: []Route{{Destination: "198.51.100.7/24", Gateway: "192.0.2.254", Metric: 5}}},
				"mac=52:54:00:00:00:04": {Addresses: []string{"2001:db8::4/64"}, GatewayIPv6: "2001:db8::1", MTU: 9000},
				"eth2":                  {DHCP: ptr(false)},
			}},
			want: []LinkPlan{
				{Name: "ens3", Key: "mac=52:54:00:00:00:04", MTU: 9000, Addresses: []netip.Prefix{pfx("2001:db8::4/64")}, Routes: []RoutePlan{{Dst: pfx("::/0"), Gw: addr("2001:db8::1")}}},
				{Name: "eth0", Key: "eth*", DHCP: true},
				{Name: "eth1", Key: "eth1", Addresses: []netip.Prefix{pfx("192.0.2.5/24")}, Routes: []RoutePlan{
					{Dst: pfx("0.0.0.0/0"), Gw: addr("192.0.2.1")},
					{Dst: pfx("198.51.100.0/24"), Gw: addr("192.0.2.254"), Metric: 5},
				}},
				{Name: "eth2", Key: "eth2"},
			},
		},
		{
			name: "gateways on two links get metrics 0 and 1; one no address covers is onlink",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"eth2": {Address: "203.0.113.85/32", Gateway: "203.0.113.1", Routes: []Route{{Destination: "0.0.0.0/0", Gateway: "203.0.113.2", Metric: 1}}},
				"eth1": {Address: "198.51.100.41/24", Gateway: "198.51.100.1", GatewayIPv6: "fe80::1"},
			}},
			want: []LinkPlan{
				{Name: "eth1", Key: "eth1", Addresses: []netip.Prefix{pfx("198.51.100.41/24")}, Routes: []RoutePlan{
					{Dst: pfx("0.0.0.0/0"), Gw: addr("198.51.100.1")},
					{Dst: pfx("::/0"), Gw: addr("fe80::1")},
				}},
				// Metric 1 is eth2's own second route: its gateway takes 2.
				{Name: "eth2", Key: "eth2", Addresses: []netip.Prefix{pfx("203.0.113.85/32")}, Routes: []RoutePlan{
					{Dst: pfx("0.0.0.0/0"), Gw: addr("203.0.113.1"), Metric: 2, OnLink: true},
					{Dst: pfx("0.0.0.0/0"), Gw: addr("203.0.113.2"), Metric: 1, OnLink: true},
				}},
			},
		},
		{
			name: "bond slaves, then the bond, then its VLANs",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"bond0": {BondOpts: map[string]string{"mode": "active-backup", "miimon": "100"}, Address: "192.0.2.9/24", Vlans: "100,200:mgmt"},
				"eth0":  {Bond: "bond0"},
				"eth1":  {Bond: "bond0"},
				"mgmt":  {Address: "203.0.113.9/24"},
			}},
			want: []LinkPlan{
				{Name: "eth0", Key: "eth0", Master: "bond0"},
				{Name: "eth1", Key: "eth1", Master: "bond0"},
				{Name: "bond0", Key: "bond0", Create: &LinkSpec{Kind: "bond", BondOpts: map[string]string{"mode": "active-backup", "miimon": "100"}}, Addresses: []netip.Prefix{pfx("192.0.2.9/24")}},
				{Name: "bond0.100", Create: &LinkSpec{Kind: "vlan", Parent: "bond0", VlanID: 100}},
				{Name: "mgmt", Key: "mgmt", Create: &LinkSpec{Kind: "vlan", Parent: "bond0", VlanID: 200}, Addresses: []netip.Prefix{pfx("203.0.113.9/24")}},
			},
		},
		{
			name: "bridge with a member",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"br0":  {Bridge: "true", Address: "192.0.2.1/24"},
				"eth0": {Bridge: "br0"},
			}},
			want: []LinkPlan{
				{Name: "eth0", Key: "eth0", Master: "br0"},
				{Name: "br0", Key: "br0", Create: &LinkSpec{Kind: "bridge"}, Addresses: []netip.Prefix{pfx("192.0.2.1/24")}},
			},
		},
		{
			name: "member of an undeclared bridge creates it, up with no address",
			cfg: Config{Interfaces: map[string]InterfaceConfig{
				"eth0": {Bridge: "br1"},
			}},
			want: []LinkPlan{
				{Name: "eth0", Key: "eth0", Master: "br1"},
				{Name: "br1", Create: &LinkSpec{Kind: "bridge"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ps := tt.cfg.Validate(); len(ps) > 0 {
				t.Fatalf("Validate() = %v, want none", ps)
			}
			got, err := MakePlan(tt.cfg, links)
			if err != nil {
				t.Fatalf("MakePlan() error: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Links, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); diff != "" {
				t.Errorf("MakePlan() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLinkLocalIsStableAndInRange(t *testing.T) {
	l := LinkInfo{Name: "eth0", MAC: "52:54:00:00:00:01"}
	a, b := linkLocal(l), linkLocal(l)
	if a != b {
		t.Errorf("linkLocal twice = %v, %v; want the same", a, b)
	}
	if !pfx("169.254.0.0/16").Contains(a.Addr()) || a.Bits() != 16 || a.Addr().As4()[2] == 0 || a.Addr().As4()[2] == 255 {
		t.Errorf("linkLocal = %v, want 169.254.1.0-169.254.254.255/16", a)
	}
}

func TestLinkFor(t *testing.T) {
	b, err := linkFor("bond0", &LinkSpec{Kind: "bond", BondOpts: map[string]string{
		"mode": "802.3ad", "miimon": "100", "updelay": "200", "lacp_rate": "fast", "xmit_hash_policy": "layer3+4", "arp_ip_target": "192.0.2.1,192.0.2.2",
	}}, 0)
	if err != nil {
		t.Fatalf("linkFor(bond) error: %v", err)
	}
	bond, ok := b.(*netlink.Bond)
	if !ok {
		t.Fatalf("linkFor(bond) = %T, want *netlink.Bond", b)
	}
	if bond.Name != "bond0" || bond.Mode != netlink.BOND_MODE_802_3AD || bond.Miimon != 100 || bond.UpDelay != 200 ||
		bond.LacpRate != netlink.BOND_LACP_RATE_FAST || bond.XmitHashPolicy != netlink.BOND_XMIT_HASH_POLICY_LAYER3_4 || len(bond.ArpIpTargets) != 2 {
		t.Errorf("linkFor(bond) = %+v", bond)
	}
	if b, err := linkFor("bond1", &LinkSpec{Kind: "bond", BondOpts: map[string]string{"mode": "1"}}, 0); err != nil || b.(*netlink.Bond).Mode != netlink.BOND_MODE_ACTIVE_BACKUP {
		t.Errorf("linkFor(bond mode 1) = %+v, %v; want active-backup", b, err)
	}
	if _, err := linkFor("bond2", &LinkSpec{Kind: "bond", BondOpts: map[string]string{"mode": "fastest"}}, 0); err == nil {
		t.Error("linkFor(bond mode fastest) error = nil, want one")
	}
	v, err := linkFor("mgmt", &LinkSpec{Kind: "vlan", Parent: "bond0", VlanID: 200}, 7)
	if err != nil {
		t.Fatalf("linkFor(vlan) error: %v", err)
	}
	vl := v.(*netlink.Vlan)
	if vl.Name != "mgmt" || vl.VlanId != 200 || vl.ParentIndex != 7 || vl.VlanProtocol != netlink.VLAN_PROTOCOL_8021Q {
		t.Errorf("linkFor(vlan) = %+v", vl)
	}
	if br, err := linkFor("br0", &LinkSpec{Kind: "bridge"}, 0); err != nil || br.Type() != "bridge" {
		t.Errorf("linkFor(bridge) = %v, %v", br, err)
	}
}

func TestResolvers(t *testing.T) {
	leases := []*Lease{
		{Link: "eth0", DNS: []netip.Addr{addr("198.51.100.53"), addr("192.0.2.53")}, Search: []string{"a.example"}},
		{Link: "eth1", DNS: []netip.Addr{addr("203.0.113.53")}, Search: []string{"b.example", "a.example"}},
	}
	ns, search := resolvers(DNSConfig{Nameservers: []string{"192.0.2.53"}, Search: []string{"c.example"}}, leases)
	if diff := cmp.Diff([]string{"192.0.2.53", "198.51.100.53", "203.0.113.53"}, ns); diff != "" {
		t.Errorf("nameservers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c.example", "a.example", "b.example"}, search); diff != "" {
		t.Errorf("search (-want +got):\n%s", diff)
	}
}
