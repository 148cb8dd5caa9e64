package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route protocols Berth marks its routes with, so it removes only its own.
const (
	protoStatic = unix.RTPROT_STATIC
	protoDHCP   = unix.RTPROT_DHCP
)

// DefaultDHCPTimeout is used when dhcp_timeout is unset.
const DefaultDHCPTimeout = 10 * time.Second

// State is the network as Berth applied it: the plan, the DHCP leases and
// their clients. Run keeps the leases renewed; Close stops and releases.
type State struct {
	mu       sync.Mutex
	o        *options
	h        *netlink.Handle
	cfg      Config
	plan     *Plan
	leases   map[string]*dhcpLink // by link name
	hostname string
	dns      []string
	search   []string
	saved    []byte // the status last saved, without its time
}

// Plan returns what Apply resolved the config to.
func (s *State) Plan() *Plan { return s.plan }

// Leases returns the current DHCP leases, sorted by link.
func (s *State) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ls []Lease
	for _, d := range s.leases {
		if d.lease != nil {
			ls = append(ls, *d.lease)
		}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Link < ls[j].Link })
	return ls
}

// Hostname is the hostname Apply settled on ("" when it left it alone).
func (s *State) Hostname() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hostname
}

// Close stops every DHCP client without releasing its lease (the address
// stays until it expires, as a reboot needs) and closes the netlink handle.
func (s *State) Close() error {
	s.mu.Lock()
	var ds []*dhcpLink
	for _, d := range s.leases {
		ds = append(ds, d)
	}
	h := s.h
	s.h = nil
	s.mu.Unlock()
	var errs []error
	for _, d := range ds {
		d.mu.Lock()
		if d.client != nil {
			errs = append(errs, d.client.Close())
			d.client = nil
		}
		d.mu.Unlock()
	}
	if h != nil {
		h.Close()
	}
	return errors.Join(errs...)
}

// Apply makes the kernel's network match cfg: it validates cfg (a
// *ValidationError and no change when invalid), creates bonds, bridges and
// VLANs, configures each matched link (master, MTU, up, addresses, routes),
// removes addresses and Berth's routes that are no longer wanted, takes
// DHCP leases on every DHCP link in parallel within dhcp_timeout, then
// writes resolv.conf, hostname and hosts under the root.
//
// Running it twice with the same config changes nothing. The returned
// State is non-nil once links were touched, even with an error (for
// example a DHCP timeout on one link); call its Run to keep leases renewed
// and Close when done.
func Apply(ctx context.Context, cfg Config, opts ...Option) (*State, error) {
	if ps := cfg.Validate(); len(ps) > 0 {
		return nil, &ValidationError{Problems: ps}
	}
	o := newOptions(opts)
	h, err := o.handle()
	if err != nil {
		return nil, err
	}
	links, err := listLinks(h)
	if err != nil {
		h.Close()
		return nil, err
	}
	plan, err := MakePlan(cfg, links)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("plan network: %w", err)
	}
	s := &State{o: o, h: h, cfg: cfg, plan: plan, leases: map[string]*dhcpLink{}}
	if prev := o.previous; prev != nil {
		prev.mu.Lock()
		for name, d := range prev.leases {
			s.leases[name] = d
		}
		prev.leases = nil
		if prev.h != nil {
			prev.h.Close()
			prev.h = nil
		}
		prev.mu.Unlock()
	}
	var errs []error
	t0 := time.Now()
	if err := o.runCommands(ctx, "pre_cmds", cfg.PreCmds); err != nil {
		errs = append(errs, err)
	}
	if err := s.createMasters(); err != nil {
		return s, errors.Join(append(errs, err)...)
	}
	wantDHCP := map[string]bool{}
	for _, lp := range plan.Links {
		if lp.DHCP {
			wantDHCP[lp.Name] = true
		}
		if err := s.configureLink(ctx, lp); err != nil {
			errs = append(errs, fmt.Errorf("configure %s: %w", lp.Name, err))
		}
	}
	// Leases handed over on links that no longer want DHCP end here; their
	// addresses went with configureLink.
	s.mu.Lock()
	var stop []*dhcpLink
	for name, d := range s.leases {
		if !wantDHCP[name] {
			stop = append(stop, d)
			delete(s.leases, name)
		}
	}
	s.mu.Unlock()
	for _, d := range stop {
		o.log.Info("stop dhcp", "link", d.name)
		s.stopLease(d)
	}
	o.log.Debug("links configured", "took", time.Since(t0))
	errs = append(errs, s.dhcpAll(ctx, plan)...)
	o.log.Debug("dhcp done", "took", time.Since(t0))
	for _, lp := range plan.Links {
		if err := o.runCommands(ctx, "post_up", lp.PostUp, "IFACE="+lp.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.writeFiles(); err != nil {
		errs = append(errs, err)
	}
	o.log.Debug("files written", "took", time.Since(t0))
	if err := o.runCommands(ctx, "post_cmds", cfg.PostCmds); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// handle opens a netlink socket for the route family only: netconf needs
// nothing else, and netlink.NewHandle() without families also opens XFRM and
// netfilter sockets, which fail unless xfrm_user and nfnetlink are loaded.
func (o *options) handle() (*netlink.Handle, error) {
	if o.ns.IsOpen() {
		h, err := netlink.NewHandleAt(o.ns, unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("open netlink in netns: %w", err)
		}
		return h, nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return h, nil
}

func listLinks(h *netlink.Handle) ([]LinkInfo, error) {
	ls, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []LinkInfo
	for _, l := range ls {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 {
			out = append(out, LinkInfo{Name: a.Name, Loopback: true})
			continue
		}
		out = append(out, LinkInfo{Name: a.Name, MAC: strings.ToLower(a.HardwareAddr.String())})
	}
	return out, nil
}

// createMasters creates every missing bond and bridge before any link is
// configured, so slaves and members can join them.
func (s *State) createMasters() error {
	for _, lp := range s.plan.Links {
		if lp.Create == nil || lp.Create.Kind == "vlan" {
			continue
		}
		if err := s.createLink(lp.Name, lp.Create); err != nil {
			return err
		}
	}
	return nil
}

func (s *State) createLink(name string, spec *LinkSpec) error {
	if _, err := s.h.LinkByName(name); err == nil {
		return nil
	}
	parent := 0
	if spec.Kind == "vlan" {
		p, err := s.h.LinkByName(spec.Parent)
		if err != nil {
			return fmt.Errorf("create vlan %s: parent %s: %w", name, spec.Parent, err)
		}
		parent = p.Attrs().Index
	}
	l, err := linkFor(name, spec, parent)
	if err != nil {
		return err
	}
	s.o.log.Info("create link", "link", name, "kind", spec.Kind)
	if err := s.h.LinkAdd(l); err != nil {
		return fmt.Errorf("create %s %s: %w", spec.Kind, name, err)
	}
	return nil
}

// linkFor builds the netlink object for a virtual link. It is pure, so the
// attributes of bonds and VLANs are unit-tested where the kernel lacks them.
func linkFor(name string, spec *LinkSpec, parentIndex int) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	switch spec.Kind {
	case "bridge":
		return &netlink.Bridge{LinkAttrs: attrs}, nil
	case "vlan":
		attrs.ParentIndex = parentIndex
		return &netlink.Vlan{LinkAttrs: attrs, VlanId: spec.VlanID, VlanProtocol: netlink.VLAN_PROTOCOL_8021Q}, nil
	case "bond":
		b := netlink.NewLinkBond(attrs)
		for k, v := range spec.BondOpts {
			n, _ := strconv.Atoi(v)
			switch k {
			case "mode":
				if m, err := strconv.Atoi(v); err == nil {
					b.Mode = netlink.BondMode(m)
				} else {
					b.Mode = netlink.StringToBondMode(v)
				}
				if b.Mode == netlink.BOND_MODE_UNKNOWN {
					return nil, fmt.Errorf("bond %s: unknown mode %q", name, v)
				}
			case "miimon":
				b.Miimon = n
			case "updelay":
				b.UpDelay = n
			case "downdelay":
				b.DownDelay = n
			case "arp_interval":
				b.ArpInterval = n
			case "min_links":
				b.MinLinks = n
			case "lacp_rate":
				switch v {
				case "fast", "1":
					b.LacpRate = netlink.BOND_LACP_RATE_FAST
				default:
					b.LacpRate = netlink.BOND_LACP_RATE_SLOW
				}
			case "xmit_hash_policy":
				b.XmitHashPolicy = netlink.StringToBondXmitHashPolicy(v)
			case "arp_ip_target":
				for _, t := range strings.Split(v, ",") {
					ip := net.ParseIP(strings.TrimSpace(t))
					if ip == nil {
						return nil, fmt.Errorf("bond %s: arp_ip_target %q is not an IP", name, t)
					}
					b.ArpIpTargets = append(b.ArpIpTargets, ip)
				}
			default:
				return nil, fmt.Errorf("bond %s: unknown option %q", name, k)
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("link %s: unknown kind %q", name, spec.Kind)
}

func (s *State) configureLink(ctx context.Context, lp LinkPlan) error {
	o := s.o
	if lp.Create != nil && lp.Create.Kind == "vlan" {
		if err := s.createLink(lp.Name, lp.Create); err != nil {
			return err
		}
	}
	l, err := s.h.LinkByName(lp.Name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	if err := o.runCommands(ctx, "pre_up", lp.PreUp, "IFACE="+lp.Name); err != nil {
		return err
	}
	a := l.Attrs()
	if lp.Master != "" {
		m, err := s.h.LinkByName(lp.Master)
		if err != nil {
			return fmt.Errorf("find master %s: %w", lp.Master, err)
		}
		if a.MasterIndex != m.Attrs().Index {
			o.log.Info("set master", "link", lp.Name, "master", lp.Master)
			// A bond takes only slaves that are down.
			if err := s.h.LinkSetDown(l); err != nil {
				return fmt.Errorf("set down: %w", err)
			}
			if err := s.h.LinkSetMasterByIndex(l, m.Attrs().Index); err != nil {
				return fmt.Errorf("join %s: %w", lp.Master, err)
			}
		}
	}
	if lp.Master == "" && a.MasterIndex != 0 && !o.early {
		// No longer a bond slave or bridge member.
		o.log.Info("leave master", "link", lp.Name)
		if err := s.h.LinkSetNoMaster(l); err != nil {
			return fmt.Errorf("leave master: %w", err)
		}
	}
	if lp.MTU != 0 && a.MTU != lp.MTU {
		o.log.Info("set mtu", "link", lp.Name, "mtu", lp.MTU)
		if err := s.h.LinkSetMTU(l, lp.MTU); err != nil {
			return fmt.Errorf("set mtu %d: %w", lp.MTU, err)
		}
	}
	if a.Flags&net.FlagUp == 0 || lp.Master != "" {
		o.log.Info("set up", "link", lp.Name)
		if err := s.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
	}
	if o.early {
		return nil
	}
	// Without it, removing a link's first IPv4 address of a subnet (an old
	// lease) removes every other address in that subnet with it.
	if err := o.sysctl("net/ipv4/conf/"+lp.Name+"/promote_secondaries", "1"); err != nil {
		o.log.Warn("promote_secondaries", "link", lp.Name, "err", err)
	}
	if err := s.syncAddrs(l, lp); err != nil {
		return err
	}
	if !lp.DHCP {
		// Routes of a lease this link no longer takes.
		if err := s.syncRoutes(l, nil, protoDHCP, 0); err != nil {
			return err
		}
	}
	return s.syncRoutes(l, lp.Routes, protoStatic, 0)
}

// syncAddrs adds the wanted static addresses, then removes every other
// global address, except, on a DHCP link, those with a finite lifetime
// (a lease: the DHCP step replaces it).
func (s *State) syncAddrs(l netlink.Link, lp LinkPlan) error {
	have, err := s.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	permanent := map[netip.Prefix]bool{}
	for _, a := range have {
		if a.ValidLft <= 0 || a.ValidLft >= 0xffffffff {
			permanent[prefixOf(a.IPNet)] = true
		}
	}
	want := map[netip.Prefix]bool{}
	for _, p := range lp.Addresses {
		want[p] = true
		if permanent[p] {
			continue // there already: no change, no event
		}
		ip := net.IP(p.Addr().AsSlice())
		na := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			// Usable at once: a static address is the admin's promise.
			na.Flags = unix.IFA_F_NODAD
		}
		if p.Addr().Is4() && p.Addr().As4()[0] == 169 && p.Addr().As4()[1] == 254 {
			na.Scope = unix.RT_SCOPE_LINK
		}
		if err := s.h.AddrReplace(l, na); err != nil {
			return fmt.Errorf("add address %s: %w", p, err)
		}
		s.o.log.Info("add address", "link", lp.Name, "address", p)
	}
	var lease netip.Prefix
	s.mu.Lock()
	if d := s.leases[lp.Name]; d != nil && d.lease != nil && lp.DHCP {
		lease = d.lease.Address
	}
	s.mu.Unlock()
	for _, a := range have {
		p := prefixOf(a.IPNet)
		if want[p] || p == lease {
			continue
		}
		if p.Addr().Is6() && (p.Addr().IsLinkLocalUnicast() || a.Flags&unix.IFA_F_PERMANENT == 0) {
			continue // the kernel's own: link-local, or autoconfigured from a router advertisement
		}
		if l.Attrs().Flags&net.FlagLoopback != 0 && p.Addr().IsLoopback() {
			continue // lo's own 127.0.0.1 and ::1
		}
		if lp.DHCP && a.ValidLft > 0 && a.ValidLft < 0xffffffff && p.Addr().Is4() {
			continue
		}
		s.o.log.Info("remove address", "link", lp.Name, "address", p)
		if err := s.h.AddrDel(l, &a); err != nil {
			return fmt.Errorf("remove address %s: %w", p, err)
		}
	}
	return nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// syncRoutes makes the routes of protocol proto on l exactly want.
func (s *State) syncRoutes(l netlink.Link, want []RoutePlan, proto netlink.RouteProtocol, defMetric int) error {
	idx := l.Attrs().Index
	type key struct {
		dst    netip.Prefix
		gw     netip.Addr
		metric int
	}
	have, err := s.h.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	keyOf := func(r netlink.Route) key {
		dst := netip.MustParsePrefix("0.0.0.0/0")
		if r.Family == netlink.FAMILY_V6 {
			dst = netip.MustParsePrefix("::/0")
		}
		if r.Dst != nil {
			dst = prefixOf(r.Dst)
		}
		var gw netip.Addr
		if r.Gw != nil {
			gw, _ = netip.AddrFromSlice(r.Gw)
			gw = gw.Unmap()
		}
		return key{dst, gw, r.Priority}
	}
	present := map[key]bool{}
	for _, r := range have {
		if r.Protocol == proto {
			present[keyOf(r)] = true
		}
	}
	keep := map[key]bool{}
	for _, r := range want {
		m := r.Metric
		if m == 0 {
			m = defMetric
		}
		if m == 0 && r.Dst.Addr().Is6() {
			m = 1024 // the kernel's IPv6 default: compare as it reports it
		}
		gw := r.Gw
		if gw.IsValid() && gw.IsUnspecified() {
			gw = netip.Addr{}
		}
		keep[key{r.Dst, gw, m}] = true
		if present[key{r.Dst, gw, m}] {
			continue // there already: no change, no event
		}
		nr := &netlink.Route{
			LinkIndex: idx,
			Dst:       &net.IPNet{IP: net.IP(r.Dst.Addr().AsSlice()), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
			Protocol:  proto,
			Priority:  m,
		}
		if r.Gw.IsValid() && !r.Gw.IsUnspecified() {
			nr.Gw = net.IP(r.Gw.AsSlice())
			if r.OnLink {
				nr.Flags = int(netlink.FLAG_ONLINK)
			}
		} else {
			nr.Scope = netlink.SCOPE_LINK
		}
		if r.Dst.Addr().Is6() {
			nr.Family = netlink.FAMILY_V6
		} else {
			nr.Family = netlink.FAMILY_V4
		}
		if err := s.h.RouteReplace(nr); err != nil {
			return fmt.Errorf("add route %s via %s: %w", r.Dst, r.Gw, err)
		}
		s.o.log.Info("add route", "link", l.Attrs().Name, "dst", r.Dst, "gw", gw, "metric", m)
	}
	for _, r := range have {
		if r.Protocol != proto {
			continue
		}
		k := keyOf(r)
		if keep[k] {
			continue
		}
		s.o.log.Info("remove route", "link", l.Attrs().Name, "dst", k.dst, "gw", k.gw, "metric", k.metric)
		if err := s.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove route %s: %w", k.dst, err)
		}
	}
	return nil
}

// dhcpTimeout is the configured first-lease timeout.
func (c Config) dhcpTimeout() time.Duration {
	if c.DHCPTimeout > 0 {
		return time.Duration(c.DHCPTimeout) * time.Second
	}
	return DefaultDHCPTimeout
}

// dhcpAll takes a lease on every DHCP link at once (one client per link),
// keeping leases handed over from a previous State.
func (s *State) dhcpAll(ctx context.Context, plan *Plan) []error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.dhcpTimeout())
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, lp := range plan.Links {
		if !lp.DHCP {
			continue
		}
		s.mu.Lock()
		d := s.leases[lp.Name]
		s.mu.Unlock()
		if d != nil && d.lease != nil && time.Now().Before(d.lease.Expires) {
			s.o.log.Info("keep lease", "link", lp.Name, "address", d.lease.Address)
			d.mtuFixed = lp.MTU != 0
			continue
		}
		wg.Add(1)
		go func(lp LinkPlan) {
			defer wg.Done()
			if err := s.obtain(ctx, lp); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("dhcp on %s: %w", lp.Name, err))
				mu.Unlock()
			}
		}(lp)
	}
	wg.Wait()
	return errs
}

// writeFiles writes resolv.conf, hostname and hosts and the state file.
func (s *State) writeFiles() error {
	s.mu.Lock()
	var leases []*Lease
	names := make([]string, 0, len(s.leases))
	for n := range s.leases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if l := s.leases[n].lease; l != nil {
			leases = append(leases, l)
		}
	}
	s.dns, s.search = resolvers(s.cfg.DNS, leases)
	host := s.o.hostname
	if host == "" {
		for _, l := range leases {
			if l.Hostname != "" {
				host = l.Hostname
				break
			}
		}
	}
	s.hostname = host
	dns, search := s.dns, s.search
	s.mu.Unlock()
	var errs []error
	if err := writeResolvConf(s.o.root, dns, search); err != nil {
		errs = append(errs, err)
	}
	if host != "" {
		if err := writeHostname(s.o.root, host); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.saveStatus(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func isRootSlash(root string) bool {
	fi, err := os.Stat(root)
	if err != nil {
		return false
	}
	rfi, err := os.Stat("/")
	return err == nil && os.SameFile(fi, rfi)
}

// CurrentLinks lists the non-loopback links MakePlan would match against
// (in the WithNetns namespace, if given).
func CurrentLinks(opts ...Option) ([]LinkInfo, error) {
	h, err := newOptions(opts).handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return listLinks(h)
}
