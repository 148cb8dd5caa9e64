package netconf

import (
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a Config. Path is relative to
// `rancher.network`, e.g. "interfaces.eth0.address".
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// ValidationError is returned by Apply for a Config with problems; nothing
// has been applied when it is returned.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	s := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s[i] = "rancher.network." + p.String()
	}
	return "invalid network config: " + strings.Join(s, "; ")
}

// isBondMode reports whether m is a mode name the kernel's bonding driver
// accepts, or its numeric alias.
func isBondMode(m string) bool {
	switch m {
	case "balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb",
		"0", "1", "2", "3", "4", "5", "6":
		return true
	}
	return false
}

// isBondOption reports whether o is a bond_opts key Berth applies; anything
// else is a problem rather than being silently ignored.
func isBondOption(o string) bool {
	switch o {
	case "mode", "miimon", "updelay", "downdelay", "lacp_rate", "xmit_hash_policy",
		"arp_interval", "arp_ip_target", "min_links":
		return true
	}
	return false
}

func isXmitHashPolicy(v string) bool {
	switch v {
	case "layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac":
		return true
	}
	return false
}

// Validate checks c without touching the system and returns every problem
// found, sorted by key path. An empty result means Apply will accept c.
func (c Config) Validate() []Problem {
	var ps []Problem
	add := func(p, format string, a ...any) {
		ps = append(ps, Problem{Path: p, Message: fmt.Sprintf(format, a...)})
	}
	for i, ns := range c.DNS.Nameservers {
		if _, err := netip.ParseAddr(ns); err != nil {
			add(fmt.Sprintf("dns.nameservers[%d]", i), "%q is not an IP address", ns)
		}
	}
	for i, s := range c.DNS.Search {
		if s == "" || strings.ContainsAny(s, " \t\n") {
			add(fmt.Sprintf("dns.search[%d]", i), "%q is not a domain name", s)
		}
	}
	if c.DHCPTimeout < 0 {
		add("dhcp_timeout", "%d is negative", c.DHCPTimeout)
	}
	keys := make([]string, 0, len(c.Interfaces))
	for k := range c.Interfaces {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bonds := map[string]bool{}
	bridges := map[string]string{} // bridge name -> key that makes it one
	for _, k := range keys {
		ic := c.Interfaces[k]
		if ic.Bond != "" {
			bonds[ic.Bond] = true
		}
		if isMember(ic) {
			bridges[ic.Bridge] = k
		}
		if ic.Bridge == "true" {
			bridges[k] = k
		}
	}
	for _, k := range keys {
		ic := c.Interfaces[k]
		if by, ok := bridges[ic.Bond]; ok && ic.Bond != "" {
			add("interfaces."+k+".bond", "%s is a bridge (interfaces.%s), not a bond", ic.Bond, by)
		}
		if len(ic.BondOpts) > 0 {
			if by, ok := bridges[k]; ok {
				add("interfaces."+k+".bond_opts", "%s is a bridge (interfaces.%s), not a bond", k, by)
			}
		}
	}
	for _, k := range keys {
		ic := c.Interfaces[k]
		p := "interfaces." + k
		m := ic.Match
		if m == "" {
			m = k
		}
		if err := validMatcher(m); err != nil {
			if ic.Match != "" {
				add(p+".match", "%v", err)
			} else {
				add(p, "%v", err)
			}
		}
		addrs := ic.Addresses
		if ic.Address != "" {
			addrs = append([]string{ic.Address}, addrs...)
		}
		for i, a := range addrs {
			ap := p + ".address"
			if ic.Address == "" || i > 0 {
				j := i
				if ic.Address != "" {
					j--
				}
				ap = fmt.Sprintf("%s.addresses[%d]", p, j)
			}
			if err := validPrefix(a); err != nil {
				add(ap, "%v", err)
			}
		}
		if ic.Gateway != "" {
			if a, err := netip.ParseAddr(ic.Gateway); err != nil || !a.Is4() {
				add(p+".gateway", "%q is not an IPv4 address", ic.Gateway)
			}
		}
		if ic.GatewayIPv6 != "" {
			if a, err := netip.ParseAddr(ic.GatewayIPv6); err != nil || a.Is4() {
				add(p+".gateway_ipv6", "%q is not an IPv6 address", ic.GatewayIPv6)
			}
		}
		if ic.MTU != 0 && (ic.MTU < 68 || ic.MTU > 65535) {
			add(p+".mtu", "%d is outside 68..65535", ic.MTU)
		}
		for i, r := range ic.Routes {
			rp := fmt.Sprintf("%s.routes[%d]", p, i)
			dst, derr := netip.ParsePrefix(r.Destination)
			if derr != nil {
				add(rp+".destination", "%q is not a CIDR prefix", r.Destination)
			}
			if r.Gateway != "" {
				gw, err := netip.ParseAddr(r.Gateway)
				switch {
				case err != nil:
					add(rp+".gateway", "%q is not an IP address", r.Gateway)
				case derr == nil && gw.Is4() != dst.Addr().Is4():
					add(rp+".gateway", "%q is not of the same IP version as the destination %q", r.Gateway, r.Destination)
				}
			}
			if r.Metric < 0 {
				add(rp+".metric", "%d is negative", r.Metric)
			}
		}
		if ic.Bridge != "" && ic.Bridge != "true" && ic.Bridge != "false" && !validLinkName(ic.Bridge) {
			add(p+".bridge", "%q is neither true nor a link name", ic.Bridge)
		}
		if ic.Bridge == "true" && (ic.Match != "" || !isExactName(k)) {
			add(p+".bridge", "bridge: true creates a bridge and needs a single link name as the key, not %q", m)
		}
		if ic.Bond != "" && (ic.Bond == k || ic.Bond == m) {
			add(p+".bond", "a link cannot be a slave of itself")
		}
		if ic.Bond != "" && !validLinkName(ic.Bond) {
			add(p+".bond", "%q is not a link name", ic.Bond)
		}
		if ic.Bond != "" && ic.Bridge != "" && ic.Bridge != "true" && ic.Bridge != "false" {
			add(p, "a link cannot be both a bond slave (bond: %s) and a bridge member (bridge: %s)", ic.Bond, ic.Bridge)
		}
		if len(ic.BondOpts) > 0 && !bonds[k] && !isExactName(k) {
			add(p+".bond_opts", "bond options on %q, which is not a single link name", k)
		}
		optKeys := make([]string, 0, len(ic.BondOpts))
		for o := range ic.BondOpts {
			optKeys = append(optKeys, o)
		}
		sort.Strings(optKeys)
		for _, o := range optKeys {
			v := ic.BondOpts[o]
			op := p + ".bond_opts." + o
			switch {
			case !isBondOption(o):
				add(op, "unknown bond option")
			case o == "mode" && !isBondMode(v):
				add(op, "unknown bond mode %q", v)
			case o == "miimon" || o == "updelay" || o == "downdelay" || o == "arp_interval" || o == "min_links":
				if n, err := strconv.Atoi(v); err != nil || n < 0 {
					add(op, "%q is not a non-negative integer", v)
				}
			case o == "lacp_rate" && v != "slow" && v != "fast" && v != "0" && v != "1":
				add(op, "%q is not slow or fast", v)
			case o == "xmit_hash_policy" && !isXmitHashPolicy(v):
				add(op, "unknown xmit_hash_policy %q", v)
			}
		}
		if ic.Vlans != "" {
			vs, err := parseVlans(ic.Vlans)
			if err != nil {
				add(p+".vlans", "%v", err)
			}
			for _, v := range vs {
				switch {
				case v.Name == "":
				case !isExactName(m):
					add(p+".vlans", "VLAN name %q on %q, which can match several links; use an exact link name", v.Name, m)
				case bonds[v.Name]:
					add(p+".vlans", "VLAN name %q is also a bond", v.Name)
				case bridges[v.Name] != "":
					add(p+".vlans", "VLAN name %q is also a bridge", v.Name)
				}
			}
		}
		if ic.DHCP != nil && *ic.DHCP && (ic.Bond != "" || (ic.Bridge != "" && ic.Bridge != "true" && ic.Bridge != "false")) {
			add(p+".dhcp", "a bond slave or bridge member cannot take a DHCP lease; configure its master")
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
	return ps
}

func validPrefix(s string) error {
	if !strings.Contains(s, "/") {
		if _, err := netip.ParseAddr(s); err == nil {
			return fmt.Errorf("%q has no prefix length", s)
		}
		return fmt.Errorf("%q is not an address with a prefix length", s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("%q is not an address with a prefix length", s)
	}
	if p.Addr().IsUnspecified() {
		return fmt.Errorf("%q is the unspecified address", s)
	}
	return nil
}

func validMatcher(m string) error {
	if mac, ok := strings.CutPrefix(m, "mac="); ok {
		if _, err := parseMAC(mac); err != nil {
			return fmt.Errorf("%q is not a MAC address", mac)
		}
		return nil
	}
	if _, err := path.Match(m, ""); err != nil {
		return fmt.Errorf("%q is not a valid glob", m)
	}
	if m == "" || len(m) > 15 && isExactName(m) {
		return fmt.Errorf("%q is not a valid link name (1-15 characters)", m)
	}
	return nil
}

func isExactName(s string) bool {
	return !strings.ContainsAny(s, "*?[") && !strings.HasPrefix(s, "mac=")
}

func validLinkName(s string) bool {
	return s != "" && len(s) <= 15 && !strings.ContainsAny(s, "/ \t\n:*?[")
}

// vlan is one entry of an interface's `vlans` key.
type vlan struct {
	ID   int
	Name string
}

// parseVlans reads "100,200:name": IDs with an optional link name.
func parseVlans(s string) ([]vlan, error) {
	var vs []vlan
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		idS, name, _ := strings.Cut(f, ":")
		id, err := strconv.Atoi(strings.TrimSpace(idS))
		if err != nil || id < 1 || id > 4094 {
			return nil, fmt.Errorf("VLAN ID %q is not in 1..4094", idS)
		}
		name = strings.TrimSpace(name)
		if name != "" && !validLinkName(name) {
			return nil, fmt.Errorf("VLAN name %q is not a valid link name", name)
		}
		vs = append(vs, vlan{ID: id, Name: name})
	}
	return vs, nil
}
