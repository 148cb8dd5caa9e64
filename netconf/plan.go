package netconf

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"path"
	"sort"
	"strings"
)

// LinkInfo is what planning needs to know about a link that exists.
type LinkInfo struct {
	Name string
	MAC  string // lower-case, colon separated; "" for links without one
	// Loopback links (lo) are configured only by a key that names them
	// exactly (for their pre_up and post_up hooks, or an address such as
	// an anycast /32), never by a glob or a MAC, and never take DHCP.
	Loopback bool
}

// LinkSpec describes a virtual link Berth creates.
type LinkSpec struct {
	Kind     string            `json:"kind"` // "bridge", "bond" or "vlan"
	Parent   string            `json:"parent,omitempty"`
	VlanID   int               `json:"vlan_id,omitempty"`
	BondOpts map[string]string `json:"bond_opts,omitempty"`
}

// RoutePlan is one route Berth keeps on a link.
type RoutePlan struct {
	Dst    netip.Prefix `json:"dst"`
	Gw     netip.Addr   `json:"gw,omitzero"`
	Metric int          `json:"metric,omitempty"`
	// OnLink tells the kernel the gateway is on this link although none
	// of the link's addresses covers it (a /32 with its gateway, or an
	// IPv6 gateway on a link with no global address).
	OnLink bool `json:"onlink,omitempty"`
}

// LinkPlan is the desired state of one link, resolved from the config.
type LinkPlan struct {
	Name string `json:"name"`
	// Key is the rancher.network.interfaces key that matched this link.
	Key string `json:"key"`
	// Create is set for a virtual link Berth creates.
	Create *LinkSpec `json:"create,omitempty"`
	// Master is the bond or bridge this link joins.
	Master    string         `json:"master,omitempty"`
	MTU       int            `json:"mtu,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
	Routes    []RoutePlan    `json:"routes,omitempty"`
	DHCP      bool           `json:"dhcp"`
	IPv4LL    bool           `json:"ipv4ll,omitempty"`
	PreUp     []string       `json:"pre_up,omitempty"`
	PostUp    []string       `json:"post_up,omitempty"`
}

// Plan is the ordered list of links to configure: bond slaves and bridge
// members first, then ordinary links, then bonds and bridges, then VLANs
// (so a VLAN on a bond comes after the bond and its slaves). Apply creates
// every bond and bridge before the first step.
type Plan struct {
	Links []LinkPlan `json:"links"`
}

// DefaultInterfaces is what applies when rancher.network has no interfaces:
// DHCP on every eth* link.
func DefaultInterfaces() map[string]InterfaceConfig {
	t := true
	return map[string]InterfaceConfig{"eth*": {DHCP: &t}}
}

// matcher is one interfaces key ready to match links.
type matcher struct {
	key     string
	pattern string // exact name, glob, or lower-case MAC for mac=
	kind    int    // matchExact, matchMAC, matchGlob
}

const (
	matchExact = iota
	matchMAC
	matchGlob
)

func newMatcher(key string, ic InterfaceConfig) matcher {
	m := ic.Match
	if m == "" {
		m = key
	}
	if mac, ok := strings.CutPrefix(m, "mac="); ok {
		hw, err := parseMAC(mac)
		if err == nil {
			mac = hw.String()
		}
		return matcher{key: key, pattern: strings.ToLower(mac), kind: matchMAC}
	}
	if isExactName(m) {
		return matcher{key: key, pattern: m, kind: matchExact}
	}
	return matcher{key: key, pattern: m, kind: matchGlob}
}

func (m matcher) matches(l LinkInfo) bool {
	switch m.kind {
	case matchExact:
		return l.Name == m.pattern
	case matchMAC:
		return l.MAC != "" && strings.EqualFold(l.MAC, m.pattern)
	default:
		ok, _ := path.Match(m.pattern, l.Name)
		return ok
	}
}

// better reports whether m beats o for the same link: an exact name beats a
// MAC, which beats a glob; a longer glob beats a shorter one; then key order.
func (m matcher) better(o matcher) bool {
	if m.kind != o.kind {
		return m.kind < o.kind
	}
	if len(m.pattern) != len(o.pattern) {
		return len(m.pattern) > len(o.pattern)
	}
	return m.key < o.key
}

// match returns the key of the config entry that applies to l, or "".
func match(ms []matcher, l LinkInfo) string {
	var best *matcher
	for i := range ms {
		if ms[i].matches(l) && (best == nil || ms[i].better(*best)) {
			best = &ms[i]
		}
	}
	if best == nil {
		return ""
	}
	return best.key
}

// wantsDHCP decides DHCP for one interface: `dhcp` when set; otherwise DHCP
// only for a link with no static address that is not a bond slave or
// bridge member.
func wantsDHCP(ic InterfaceConfig) bool {
	if ic.DHCP != nil {
		return *ic.DHCP
	}
	if ic.Address != "" || len(ic.Addresses) > 0 || ic.Bond != "" || isMember(ic) || ic.IPv4LL {
		return false
	}
	return true
}

func isMember(ic InterfaceConfig) bool {
	return ic.Bridge != "" && ic.Bridge != "true" && ic.Bridge != "false"
}

// MakePlan resolves cfg against the links that exist. It is pure: it reads
// nothing from the system. cfg must be valid (see Config.Validate).
func MakePlan(cfg Config, links []LinkInfo) (*Plan, error) {
	ifaces := cfg.Interfaces
	if len(ifaces) == 0 {
		ifaces = DefaultInterfaces()
	}
	keys := make([]string, 0, len(ifaces))
	for k := range ifaces {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ms := make([]matcher, 0, len(keys))
	for _, k := range keys {
		ms = append(ms, newMatcher(k, ifaces[k]))
	}

	exists := map[string]bool{}
	var all, loopbacks []LinkInfo
	for _, l := range links {
		exists[l.Name] = true
		if l.Loopback {
			if _, ok := ifaces[l.Name]; ok {
				loopbacks = append(loopbacks, l)
			}
			continue
		}
		all = append(all, l)
	}
	created := map[string]*LinkSpec{}
	addVirtual := func(name string, spec *LinkSpec) error {
		if prev, ok := created[name]; ok {
			if prev.Kind != spec.Kind {
				return fmt.Errorf("link %s is wanted both as a %s and as a %s", name, prev.Kind, spec.Kind)
			}
			return nil
		}
		if exists[name] {
			return nil // already there, from an earlier apply or the kernel
		}
		created[name] = spec
		all = append(all, LinkInfo{Name: name})
		return nil
	}
	// Bonds and bridges named by their members, or declared by their own key.
	for _, k := range keys {
		ic := ifaces[k]
		if ic.Bond != "" {
			if err := addVirtual(ic.Bond, &LinkSpec{Kind: "bond"}); err != nil {
				return nil, err
			}
		}
		if isMember(ic) {
			if err := addVirtual(ic.Bridge, &LinkSpec{Kind: "bridge"}); err != nil {
				return nil, err
			}
		}
		if isExactName(k) && ic.Match == "" {
			switch {
			case ic.Bridge == "true":
				if err := addVirtual(k, &LinkSpec{Kind: "bridge"}); err != nil {
					return nil, err
				}
			case len(ic.BondOpts) > 0:
				if err := addVirtual(k, &LinkSpec{Kind: "bond"}); err != nil {
					return nil, err
				}
			}
		}
	}
	for name, spec := range created {
		if spec.Kind == "bond" {
			if k := match(ms, LinkInfo{Name: name}); k != "" {
				spec.BondOpts = ifaces[k].BondOpts
			}
		}
	}
	// VLANs on every matched link (including bonds and bridges).
	base := append([]LinkInfo(nil), all...)
	for _, l := range base {
		k := match(ms, l)
		if k == "" || ifaces[k].Vlans == "" {
			continue
		}
		vs, err := parseVlans(ifaces[k].Vlans)
		if err != nil {
			return nil, fmt.Errorf("interfaces.%s.vlans: %w", k, err)
		}
		for _, v := range vs {
			name := v.Name
			if name == "" {
				name = fmt.Sprintf("%s.%d", l.Name, v.ID)
			}
			if err := addVirtual(name, &LinkSpec{Kind: "vlan", Parent: l.Name, VlanID: v.ID}); err != nil {
				return nil, err
			}
		}
	}

	var plans []LinkPlan
	for _, l := range append(all, loopbacks...) {
		k := l.Name // a loopback's own key, the only one it takes
		if !l.Loopback {
			k = match(ms, l)
		}
		if k == "" {
			if spec := created[l.Name]; spec != nil {
				// A bond, bridge or VLAN with no key of its own: created and up.
				plans = append(plans, LinkPlan{Name: l.Name, Create: spec})
			}
			continue
		}
		ic := ifaces[k]
		lp := LinkPlan{
			Name:   l.Name,
			Key:    k,
			Create: created[l.Name],
			MTU:    ic.MTU,
			DHCP:   wantsDHCP(ic) && !l.Loopback,
			IPv4LL: ic.IPv4LL,
			PreUp:  ic.PreUp,
			PostUp: ic.PostUp,
		}
		switch {
		case ic.Bond != "":
			lp.Master = ic.Bond
		case isMember(ic):
			lp.Master = ic.Bridge
		}
		addrs := ic.Addresses
		if ic.Address != "" {
			addrs = append([]string{ic.Address}, addrs...)
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("interfaces.%s: address %q: %w", k, a, err)
			}
			lp.Addresses = append(lp.Addresses, p)
		}
		if lp.IPv4LL {
			lp.Addresses = append(lp.Addresses, linkLocal(l))
		}
		if ic.Gateway != "" {
			gw, err := netip.ParseAddr(ic.Gateway)
			if err != nil {
				return nil, fmt.Errorf("interfaces.%s.gateway: %w", k, err)
			}
			lp.Routes = append(lp.Routes, RoutePlan{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: gw, OnLink: onLink(gw, lp.Addresses)})
		}
		if ic.GatewayIPv6 != "" {
			gw, err := netip.ParseAddr(ic.GatewayIPv6)
			if err != nil {
				return nil, fmt.Errorf("interfaces.%s.gateway_ipv6: %w", k, err)
			}
			lp.Routes = append(lp.Routes, RoutePlan{Dst: netip.MustParsePrefix("::/0"), Gw: gw, OnLink: onLink(gw, lp.Addresses)})
		}
		for i, r := range ic.Routes {
			dst, err := netip.ParsePrefix(r.Destination)
			if err != nil {
				return nil, fmt.Errorf("interfaces.%s.routes[%d]: %w", k, i, err)
			}
			rp := RoutePlan{Dst: dst.Masked(), Metric: r.Metric}
			if r.Gateway != "" {
				if rp.Gw, err = netip.ParseAddr(r.Gateway); err != nil {
					return nil, fmt.Errorf("interfaces.%s.routes[%d].gateway: %w", k, i, err)
				}
				rp.OnLink = onLink(rp.Gw, lp.Addresses)
			}
			lp.Routes = append(lp.Routes, rp)
		}
		plans = append(plans, lp)
	}
	// A master's own key may not exist; masters of members still need to be
	// known so their slaves can be ordered first.
	masters := map[string]bool{}
	for _, p := range plans {
		if p.Master != "" {
			masters[p.Master] = true
		}
	}
	rank := func(p LinkPlan) int {
		switch {
		case p.Master != "":
			return 0
		case p.Create != nil && p.Create.Kind == "vlan":
			return 3
		case masters[p.Name] || p.Create != nil:
			return 2
		}
		return 1
	}
	sort.SliceStable(plans, func(i, j int) bool {
		ri, rj := rank(plans[i]), rank(plans[j])
		if ri != rj {
			return ri < rj
		}
		// A VLAN on a VLAN-named parent still comes after its parent.
		return plans[i].Name < plans[j].Name
	})
	spreadMetrics(plans)
	return &Plan{Links: plans}, nil
}

// spreadMetrics keeps routes to one destination on several links apart
// (the multi-NIC case: eth1 and eth2 each with a gateway). The kernel
// keeps one route per destination and metric, so a replace on the second
// link would take the first link's route away, and each later apply
// would move it back. A route without a metric keeps 0 on the first link
// in plan order; on the next links it takes the lowest metric its
// destination has free.
func spreadMetrics(plans []LinkPlan) {
	type slot struct {
		dst    netip.Prefix
		metric int
	}
	used := map[slot]bool{}
	for _, p := range plans {
		for _, r := range p.Routes {
			if r.Metric != 0 {
				used[slot{r.Dst, r.Metric}] = true
			}
		}
	}
	for i := range plans {
		for j := range plans[i].Routes {
			r := &plans[i].Routes[j]
			if r.Metric != 0 {
				continue
			}
			for used[slot{r.Dst, r.Metric}] {
				r.Metric++
			}
			used[slot{r.Dst, r.Metric}] = true
		}
	}
}

// onLink says whether gw needs the kernel's onlink flag: none of addrs
// covers it, and it is not an IPv6 link-local address (always on-link).
func onLink(gw netip.Addr, addrs []netip.Prefix) bool {
	if gw.Is6() && gw.IsLinkLocalUnicast() {
		return false
	}
	for _, a := range addrs {
		if a.Masked().Contains(gw) {
			return false
		}
	}
	return true
}

// linkLocal picks the IPv4 link-local address (169.254.0.0/16, RFC 3927)
// for a link from a hash of its MAC, so it is stable across boots.
func linkLocal(l LinkInfo) netip.Prefix {
	h := fnv.New32a()
	h.Write([]byte(l.MAC + l.Name))
	v := h.Sum32()
	// 169.254.1.0 - 169.254.254.255: the range RFC 3927 allows.
	a := netip.AddrFrom4([4]byte{169, 254, byte(1 + (v>>8)%254), byte(v)})
	return netip.PrefixFrom(a, 16)
}

func parseMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("parse MAC %q: %w", s, err)
	}
	return hw, nil
}
