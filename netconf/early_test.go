package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addrEvents records address additions and removals in the near namespace
// as "+192.0.2.10/24" and "-192.0.2.120/24", in order.
type addrEvents struct {
	mu     sync.Mutex
	events []string
	done   chan struct{}
}

func (tn *testNet) watchAddrs() *addrEvents {
	tn.t.Helper()
	ch := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	ns := tn.near
	if err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		tn.t.Fatalf("subscribe to address updates: %v", err)
	}
	ev := &addrEvents{done: make(chan struct{})}
	go func() {
		defer close(ev.done)
		for u := range ch {
			sign := "-"
			if u.NewAddr {
				sign = "+"
			}
			if u.LinkAddress.IP.IsLinkLocalUnicast() {
				continue
			}
			ev.mu.Lock()
			ev.events = append(ev.events, sign+prefixOf(&u.LinkAddress).String())
			ev.mu.Unlock()
		}
	}()
	tn.t.Cleanup(func() { close(done) })
	return ev
}

// watchRoutes records route additions and removals in the near
// namespace, but for the link-local and multicast ones.
func (tn *testNet) watchRoutes() *addrEvents {
	tn.t.Helper()
	ch := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	ns := tn.near
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: &ns}); err != nil {
		tn.t.Fatalf("subscribe to route updates: %v", err)
	}
	ev := &addrEvents{done: make(chan struct{})}
	go func() {
		defer close(ev.done)
		for u := range ch {
			// The kernel adds fe80:: and ff00:: routes by itself when
			// IPv6 comes up on a link (after DAD, maybe seconds later):
			// not Berth's doing, as link-local addresses are not.
			if u.Dst != nil && (u.Dst.IP.IsLinkLocalUnicast() || u.Dst.IP.IsMulticast()) {
				continue
			}
			ev.mu.Lock()
			ev.events = append(ev.events, fmt.Sprintf("%d %v via %v", u.Type, u.Dst, u.Gw))
			ev.mu.Unlock()
		}
	}()
	tn.t.Cleanup(func() { close(done) })
	return ev
}

func (ev *addrEvents) get() []string {
	time.Sleep(100 * time.Millisecond) // let the last updates arrive
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return append([]string(nil), ev.events...)
}

func TestEarlyThenApplyKeepsTheLease(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.veth("ens1", "peer1", "")
	dm := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"}, "--dhcp-option=option:router,192.0.2.1")
	root := t.TempDir()
	early, err := Early(testCtx(t), true, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Early() error: %v", err)
	}
	leased := tn.addrs("eth0")
	if len(leased) != 1 {
		t.Fatalf("eth0 addresses after Early = %v, want one lease", leased)
	}
	if tn.link("ens1").Attrs().Flags&net.FlagUp == 0 {
		t.Error("ens1 is down after Early, want every link up")
	}
	discovers := dm.count("DHCPDISCOVER")
	ev := tn.watchAddrs()
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"eth0": {DHCP: ptr(true)},
		"ens1": {Address: "198.51.100.10/24"},
	}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root), WithPrevious(early))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	if diff := cmp.Diff(leased, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses changed by the final Apply (-early +final):\n%s", diff)
	}
	if n := dm.count("DHCPDISCOVER") - discovers; n != 0 {
		t.Errorf("final Apply sent %d DHCPDISCOVER, want none: it takes over the early lease", n)
	}
	if diff := cmp.Diff([]string{"+198.51.100.10/24"}, ev.get()); diff != "" {
		t.Errorf("address changes during the final Apply (-want +got):\n%s", diff)
	}
	if ls := st.Leases(); len(ls) != 1 || ls[0].Address.String() != leased[0] {
		t.Errorf("Leases() = %+v, want the early lease %s", ls, leased[0])
	}
}

func TestEarlyThenStaticAddsBeforeRemoving(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"}, "--dhcp-option=option:router,192.0.2.1")
	root := t.TempDir()
	early, err := Early(testCtx(t), true, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Early() error: %v", err)
	}
	leased := tn.addrs("eth0")
	if len(leased) != 1 {
		t.Fatalf("eth0 addresses after Early = %v, want one lease", leased)
	}
	ev := tn.watchAddrs()
	cfg := Config{Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.10/24", Gateway: "192.0.2.1"}}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root), WithPrevious(early))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	if diff := cmp.Diff([]string{"192.0.2.10/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses (-want +got):\n%s", diff)
	}
	// The kernel re-announces the static address when it promotes it to
	// primary; it must never be removed.
	got := ev.get()
	if len(got) < 2 || got[0] != "+192.0.2.10/24" || got[1] != "-"+leased[0] || slices.Contains(got, "-192.0.2.10/24") {
		t.Errorf("address changes = %q, want the static address added, then the lease removed, and the static never removed", got)
	}
	if diff := cmp.Diff([]string{"default via 192.0.2.1 proto 4 metric 0"}, tn.routes("eth0")); diff != "" {
		t.Errorf("eth0 routes (-want +got): the lease's routes must go:\n%s", diff)
	}
	if ls := st.Leases(); len(ls) != 0 {
		t.Errorf("Leases() = %+v, want none", ls)
	}
}

func TestEarlyWithoutDHCPSendsNothing(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	capt := tn.capture("peer0")
	st, err := Early(testCtx(t), false, WithNetns(tn.near), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatalf("Early() error: %v", err)
	}
	defer st.Close()
	if tn.link("eth0").Attrs().Flags&net.FlagUp == 0 {
		t.Error("eth0 is down, want up")
	}
	time.Sleep(time.Second)
	if n := capt.count(); n != 0 {
		t.Errorf("far end saw %d DHCP packets, want none", n)
	}
}

func TestRenewal(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	// dnsmasq's shortest lease is 2m and it keeps T1 at half of it, so
	// the test shortens T1 on the client side; leaseFrom's reading of T1
	// is unit-tested.
	dm := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"})
	root := t.TempDir()
	st, err := Apply(testCtx(t), Config{}, WithNetns(tn.near), WithRoot(root), withRenewAfter(time.Second))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	first := st.Leases()
	if len(first) != 1 {
		t.Fatalf("Leases() = %v, want one", first)
	}
	if d := first[0].Renew.Sub(first[0].Obtained); d != time.Second {
		t.Errorf("renewal due %v after the lease, want T1 = 1s", d)
	}
	requests := dm.count("DHCPREQUEST")
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	if err := st.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run() = %v, want the context's error", err)
	}
	if n := dm.count("DHCPREQUEST") - requests; n < 2 {
		t.Errorf("dnsmasq saw %d renewals in 3.5s with T1 = 1s, want at least 2", n)
	}
	later := st.Leases()
	if len(later) != 1 || later[0].Address != first[0].Address || !later[0].Obtained.After(first[0].Obtained) {
		t.Errorf("Leases() after renewals = %+v, want the same address obtained later than %v", later, first[0].Obtained)
	}
	if diff := cmp.Diff([]string{first[0].Address.String()}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses after renewals (-want +got):\n%s", diff)
	}
	saved, err := LoadStatus(root)
	if err != nil || len(saved.Leases) != 1 || !saved.Leases[0].Obtained.Equal(later[0].Obtained) {
		t.Errorf("saved status = %+v, %v; want the renewed lease", saved, err)
	}
}

func TestRunRetriesALinkWithoutLease(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	st, err := Apply(testCtx(t), Config{DHCPTimeout: 1}, WithNetns(tn.near), WithRoot(t.TempDir()))
	if err == nil {
		t.Fatal("Apply() with no server = nil error, want a timeout")
	}
	defer st.Close()
	// The server comes up after boot; Run must still get the lease.
	tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) && len(st.Leases()) == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if ls := st.Leases(); len(ls) != 1 || !strings.HasPrefix(ls[0].Address.String(), "192.0.2.1") {
		t.Errorf("Leases() = %+v, want a lease from the late server", ls)
	}
}

// TestBondAndVLANInKernel creates a bond with a veth slave and a VLAN on
// it where the kernel has them; this machine's kernel lacks both, and the
// qemu e2e suite proves them there.
func TestBondAndVLANInKernel(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "")
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"eth0":  {Bond: "bond0"},
		"bond0": {BondOpts: map[string]string{"mode": "active-backup", "miimon": "100"}, Address: "192.0.2.10/24", Vlans: "100"},
	}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(t.TempDir()))
	if errors.Is(err, unix.EOPNOTSUPP) || (err != nil && strings.Contains(err.Error(), "not supported")) {
		t.Skipf("kernel lacks bonding/8021q (MACHINE.md); proven in qemu e2e: %v", err)
	}
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	bond := tn.link("bond0")
	if b, ok := bond.(*netlink.Bond); !ok || b.Mode != netlink.BOND_MODE_ACTIVE_BACKUP {
		t.Errorf("bond0 = %+v, want an active-backup bond", bond)
	}
	if got := tn.link("eth0").Attrs().MasterIndex; got != bond.Attrs().Index {
		t.Errorf("eth0 master = %d, want bond0 (%d)", got, bond.Attrs().Index)
	}
	if v, ok := tn.link("bond0.100").(*netlink.Vlan); !ok || v.VlanId != 100 || v.ParentIndex != bond.Attrs().Index {
		t.Errorf("bond0.100 = %+v, want VLAN 100 on bond0", tn.link("bond0.100"))
	}
}

func TestRenewalRefusedGetsANewLease(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	first := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.100"})
	root := t.TempDir()
	st, err := Apply(testCtx(t), Config{}, WithNetns(tn.near), WithRoot(root), withRenewAfter(time.Second))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	if diff := cmp.Diff([]string{"192.0.2.100/24"}, tn.addrs("eth0")); diff != "" {
		t.Fatalf("eth0 addresses (-want +got):\n%s", diff)
	}
	// The network is renumbered: the new server refuses the old address.
	first.cmd.Process.Kill()
	first.cmd.Wait()
	second := tn.startDnsmasq([]string{"peer0,192.0.2.200,192.0.2.200"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if ls := st.Leases(); len(ls) == 1 && ls[0].Address.String() == "192.0.2.200/24" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if n := second.count("DHCPNAK"); n == 0 {
		t.Errorf("the new server sent no DHCPNAK; the test did not exercise a refused renewal")
	}
	if diff := cmp.Diff([]string{"192.0.2.200/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses after the refused renewal (-want +got):\n%s", diff)
	}
	saved, err := LoadStatus(root)
	if err != nil || len(saved.Leases) != 1 || saved.Leases[0].Address.String() != "192.0.2.200/24" {
		t.Errorf("saved status = %+v, %v; want the new lease", saved, err)
	}
}
