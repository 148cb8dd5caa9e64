package netconf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Lease is one DHCPv4 lease as applied to a link.
type Lease struct {
	Link     string       `json:"link"`
	Address  netip.Prefix `json:"address"`
	Router   netip.Addr   `json:"router,omitzero"`
	Routes   []RoutePlan  `json:"routes,omitempty"`
	DNS      []netip.Addr `json:"dns,omitempty"`
	Search   []string     `json:"search,omitempty"`
	Hostname string       `json:"hostname,omitempty"`
	MTU      int          `json:"mtu,omitempty"`
	Server   netip.Addr   `json:"server,omitzero"`
	Obtained time.Time    `json:"obtained"`
	Renew    time.Time    `json:"renew"`
	Expires  time.Time    `json:"expires"`
}

// dhcpLink is the DHCP client of one link and its current lease.
type dhcpLink struct {
	name     string
	client   *nclient4.Client
	raw      *nclient4.Lease
	lease    *Lease
	metric   int
	mtuFixed bool // the config sets the MTU: ignore the lease's
	mu       sync.Mutex
}

// stopLease releases d's lease (best effort) and forgets its client.
func (s *State) stopLease(d *dhcpLink) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.raw != nil && d.client == nil {
		if l, err := s.h.LinkByName(d.name); err == nil {
			d.client, _ = s.newClient(l)
		}
	}
	if d.client != nil {
		if d.raw != nil {
			_ = d.client.Release(d.raw)
		}
		d.client.Close()
		d.client = nil
	}
}

// closeClient closes d's socket between lease exchanges: an open packet
// socket sees every IPv4 packet of the link, a cost for the machine's
// lifetime. Caller holds d.mu.
func (d *dhcpLink) closeClient() {
	if d.client != nil {
		d.client.Close()
		d.client = nil
	}
}

// dhcpMetric keeps the default routes of several DHCP links apart.
func dhcpMetric(ifindex int) int { return 1024 + ifindex }

// newClient opens a DHCP client on link inside the namespace.
func (s *State) newClient(l netlink.Link) (*nclient4.Client, error) {
	a := l.Attrs()
	ifi := &net.Interface{Index: a.Index, Name: a.Name, HardwareAddr: a.HardwareAddr, MTU: a.MTU}
	var raw *packet.Conn
	err := s.o.inNetns(func() error {
		var err error
		raw, err = packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", a.Name, err)
	}
	conn := nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: nclient4.ClientPort})
	c, err := nclient4.NewWithConn(conn, a.HardwareAddr,
		nclient4.WithTimeout(s.o.retrans), nclient4.WithRetry(1<<20))
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("dhcp client on %s: %w", a.Name, err)
	}
	return c, nil
}

func (s *State) modifiers() []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionDomainName, dhcpv4.OptionHostName, dhcpv4.OptionInterfaceMTU,
		dhcpv4.OptionClasslessStaticRoute, dhcpv4.OptionDNSDomainSearchList,
		dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
	)}
	if s.o.hostname != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptHostName(s.o.hostname)))
	}
	return m
}

// obtain runs DORA on one link and applies the lease.
func (s *State) obtain(ctx context.Context, lp LinkPlan) error {
	l, err := s.h.LinkByName(lp.Name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	s.mu.Lock()
	d := s.leases[lp.Name]
	if d == nil {
		d = &dhcpLink{name: lp.Name}
		s.leases[lp.Name] = d
	}
	s.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.metric = dhcpMetric(l.Attrs().Index)
	d.mtuFixed = lp.MTU != 0
	if d.client == nil {
		if d.client, err = s.newClient(l); err != nil {
			return err
		}
	}
	defer d.closeClient()
	start := time.Now()
	// Until the kernel's link watcher marks the link up (carrier, qdisc
	// active; up to a second after "set up") packets are dropped: a
	// DISCOVER sent then is lost and costs a retransmission.
	if err := s.waitOperUp(ctx, lp.Name); err != nil {
		return err
	}
	raw, err := d.client.Request(ctx, s.modifiers()...)
	if err != nil {
		return fmt.Errorf("request lease: %w", err)
	}
	s.o.log.Info("lease", "link", lp.Name, "address", raw.ACK.YourIPAddr, "took", time.Since(start))
	return s.applyLease(l, d, raw)
}

// leaseFrom turns a DHCP ACK into a Lease (pure).
func leaseFrom(link string, raw *nclient4.Lease) (*Lease, error) {
	ack := raw.ACK
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return nil, fmt.Errorf("lease from %s has no address", ack.ServerIdentifier())
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ip4DefaultMask(ip)
	}
	ones, _ := mask.Size()
	got := raw.CreationTime
	if got.IsZero() {
		got = time.Now()
	}
	lt := ack.IPAddressLeaseTime(time.Hour)
	t1 := ack.IPAddressRenewalTime(lt / 2)
	ls := &Lease{
		Link:     link,
		Address:  netip.PrefixFrom(ip, ones),
		Hostname: ack.HostName(),
		Obtained: got,
		Renew:    got.Add(t1),
		Expires:  got.Add(lt),
	}
	if srv, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok {
		ls.Server = srv
	}
	if rs := ack.Router(); len(rs) > 0 {
		ls.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	// RFC 3442: with classless routes the router option is ignored.
	if cr := ack.ClasslessStaticRoute(); len(cr) > 0 {
		for _, r := range cr {
			rp := RoutePlan{Dst: prefixOf(r.Dest).Masked()}
			if gw, ok := netip.AddrFromSlice(r.Router.To4()); ok && !gw.IsUnspecified() {
				rp.Gw = gw
			}
			ls.Routes = append(ls.Routes, rp)
		}
	} else if ls.Router.IsValid() {
		ls.Routes = []RoutePlan{{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: ls.Router}}
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			ls.DNS = append(ls.DNS, a)
		}
	}
	if ds := ack.DomainSearch(); ds != nil {
		ls.Search = append(ls.Search, ds.Labels...)
	}
	if dn := ack.DomainName(); dn != "" && len(ls.Search) == 0 {
		ls.Search = []string{dn}
	}
	if b := ack.GetOneOption(dhcpv4.OptionInterfaceMTU); len(b) == 2 {
		ls.MTU = int(binary.BigEndian.Uint16(b))
	}
	return ls, nil
}

func ip4DefaultMask(ip netip.Addr) net.IPMask {
	return net.IP(ip.AsSlice()).DefaultMask()
}

// applyLease puts a lease on the link: address with the lease's lifetime,
// MTU, routes; a previous lease's different address goes after the new
// one is in place. Caller holds d.mu.
func (s *State) applyLease(l netlink.Link, d *dhcpLink, raw *nclient4.Lease) error {
	ls, err := leaseFrom(d.name, raw)
	if err != nil {
		return err
	}
	if s.o.renewAfter > 0 {
		ls.Renew = ls.Obtained.Add(s.o.renewAfter)
	}
	if ls.MTU >= 576 && !d.mtuFixed && l.Attrs().MTU != ls.MTU {
		if err := s.h.LinkSetMTU(l, ls.MTU); err != nil {
			return fmt.Errorf("set mtu %d from lease: %w", ls.MTU, err)
		}
	}
	valid := int(time.Until(ls.Expires).Seconds())
	if valid < 1 {
		valid = 1
	}
	p := ls.Address
	na := &netlink.Addr{
		IPNet:       &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)},
		ValidLft:    valid,
		PreferedLft: valid,
	}
	if err := s.h.AddrReplace(l, na); err != nil {
		return fmt.Errorf("add leased address %s: %w", p, err)
	}
	// Any other IPv4 address with a lifetime is an older lease (of this
	// State or of an earlier process): the new one replaces it.
	have, err := s.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range have {
		if a.ValidLft <= 0 || a.ValidLft >= 0xffffffff || prefixOf(a.IPNet) == p {
			continue
		}
		s.o.log.Info("remove old lease", "link", d.name, "address", prefixOf(a.IPNet))
		if err := s.h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove old leased address %s: %w", prefixOf(a.IPNet), err)
		}
	}
	if err := s.syncRoutes(l, ls.Routes, protoDHCP, d.metric); err != nil {
		return err
	}
	s.mu.Lock()
	d.raw = raw
	d.lease = ls
	s.mu.Unlock()
	return nil
}

// Run keeps every DHCP lease renewed (at T1, retried until expiry, then a
// new DORA) and keeps trying links that have no lease yet. It returns
// ctx's error when ctx ends, not before (also with no DHCP link). Call it
// once; PID 1 runs it for the machine's lifetime. To hand the State to a
// later Apply (WithPrevious), end Run first and wait for it to return. resolv.conf and the state file
// are rewritten after each change.
func (s *State) Run(ctx context.Context) error {
	s.mu.Lock()
	var ds []*dhcpLink
	for _, d := range s.leases {
		ds = append(ds, d)
	}
	// Links that want DHCP but got no lease in Apply.
	for _, lp := range s.plan.Links {
		if lp.DHCP && s.leases[lp.Name] == nil {
			d := &dhcpLink{name: lp.Name, mtuFixed: lp.MTU != 0}
			s.leases[lp.Name] = d
			ds = append(ds, d)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.keep(ctx, d)
		}()
	}
	wg.Wait()
	<-ctx.Done() // also with no DHCP link: Run lasts as long as ctx
	return ctx.Err()
}

// keep is the lease loop of one link.
func (s *State) keep(ctx context.Context, d *dhcpLink) {
	backoff := 2 * time.Second
	for {
		d.mu.Lock()
		var wait time.Duration
		if d.lease == nil {
			wait = 0
		} else {
			wait = time.Until(d.lease.Renew)
		}
		d.mu.Unlock()
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		err := s.refresh(ctx, d)
		if err == nil {
			// Even when ctx ends now: the files must show the lease applied.
			if werr := s.writeFiles(); werr != nil {
				s.o.log.Warn("write network files", "err", werr)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 2 * time.Second
			continue
		}
		s.o.log.Warn("dhcp", "link", d.name, "err", err)
		d.mu.Lock()
		retry := backoff
		if d.lease != nil {
			// Retry at half the time left, at least every backoff.
			if left := time.Until(d.lease.Expires) / 2; left > backoff {
				retry = min(left, time.Minute)
			}
			s.mu.Lock()
			if time.Now().After(d.lease.Expires) {
				s.o.log.Warn("lease expired", "link", d.name, "address", d.lease.Address)
				d.lease, d.raw = nil, nil
			} else {
				// Push the next attempt out instead of spinning on Renew.
				d.lease.Renew = time.Now().Add(retry)
			}
			s.mu.Unlock()
		}
		d.mu.Unlock()
		backoff = min(backoff*2, time.Minute)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// refresh renews the lease of d, or gets a new one when it has none or
// the server refuses the renewal.
func (s *State) refresh(ctx context.Context, d *dhcpLink) error {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	if h == nil {
		return errors.New("state closed")
	}
	l, err := h.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		if d.client, err = s.newClient(l); err != nil {
			return err
		}
	}
	if d.metric == 0 {
		d.metric = dhcpMetric(l.Attrs().Index)
	}
	defer d.closeClient()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if d.raw != nil {
		raw, err := d.client.Renew(rctx, d.raw, s.modifiers()...)
		if err == nil {
			s.o.log.Info("renewed", "link", d.name, "address", raw.ACK.YourIPAddr)
			return s.applyLease(l, d, raw)
		}
		var nak *nclient4.ErrNak
		if !errors.As(err, &nak) {
			return fmt.Errorf("renew: %w", err)
		}
		s.o.log.Warn("renewal refused", "link", d.name)
	}
	raw, err := d.client.Request(rctx, s.modifiers()...)
	if err != nil {
		return fmt.Errorf("request lease: %w", err)
	}
	return s.applyLease(l, d, raw)
}

// waitOperUp waits until link name's operational state is up (or unknown,
// for drivers that do not report one).
func (s *State) waitOperUp(ctx context.Context, name string) error {
	for {
		l, err := s.h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find link: %w", err)
		}
		if st := l.Attrs().OperState; st == netlink.OperUp || st == netlink.OperUnknown {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be up (carrier): %w", name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
