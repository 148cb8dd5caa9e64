package netconf

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestStaticOnlySendsNoDHCP(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	dm := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"})
	capt := tn.capture("peer0")
	_, target := tn.listen("192.0.2.1")
	root := t.TempDir()
	cfg := Config{
		Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.10/24", Gateway: "192.0.2.1"}},
		DNS:        DNSConfig{Nameservers: []string{"192.0.2.53"}},
	}
	start := time.Now()
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("static Apply took %v; a static config must not wait for DHCP", took)
	}
	if err := tn.dial(target); err != nil {
		t.Errorf("dial %s from eth0: %v; the static address is not usable", target, err)
	}
	if diff := cmp.Diff([]string{"192.0.2.10/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"default via 192.0.2.1 proto 4 metric 0"}, tn.routes("eth0")); diff != "" {
		t.Errorf("eth0 routes (-want +got):\n%s", diff)
	}
	// Give a stray client time to send, then look from the far end.
	time.Sleep(1500 * time.Millisecond)
	if n := capt.count(); n != 0 {
		t.Errorf("far end saw %d packets to UDP port 67; want none for a static-only config", n)
	}
	if n := dm.count("DHCPDISCOVER"); n != 0 {
		t.Errorf("dnsmasq logged %d DHCPDISCOVER; want none", n)
	}
	if l := dm.leases(); l != "" {
		t.Errorf("dnsmasq lease file = %q; want empty", l)
	}
	if got := readFile(t, filepath.Join(root, "etc/resolv.conf")); !strings.Contains(got, "nameserver 192.0.2.53\n") {
		t.Errorf("resolv.conf = %q; want nameserver 192.0.2.53", got)
	}
}

func TestDHCPLeaseApplied(t *testing.T) {
	tn := newTestNet(t)
	mac := tn.veth("eth0", "peer0", "192.0.2.1/24")
	dm := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"},
		"--dhcp-option=option:router,192.0.2.1",
		"--dhcp-option=option:dns-server,198.51.100.53",
		"--dhcp-option=option:domain-search,lease.example",
		"--dhcp-option=option:mtu,1400",
		"--dhcp-option=option:classless-static-route,203.0.113.0/24,192.0.2.254,0.0.0.0/0,192.0.2.1",
		"--dhcp-host="+mac.String()+",192.0.2.120,leasedhost",
	)
	capt := tn.capture("peer0")
	_, target := tn.listen("192.0.2.1")
	root := t.TempDir()
	// Nothing configured: the default is DHCP on eth*.
	st, err := Apply(testCtx(t), Config{}, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	if diff := cmp.Diff([]string{"192.0.2.120/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses (-want +got):\n%s", diff)
	}
	if err := tn.dial(target); err != nil {
		t.Errorf("dial %s: %v", target, err)
	}
	m := dhcpMetric(tn.link("eth0").Attrs().Index)
	wantRoutes := []string{
		"default via 192.0.2.1 proto 16 metric " + strconv.Itoa(m),
		"203.0.113.0/24 via 192.0.2.254 proto 16 metric " + strconv.Itoa(m),
	}
	if diff := cmp.Diff(wantRoutes, tn.routes("eth0"), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("eth0 routes (-want +got):\n%s", diff)
	}
	if mtu := tn.link("eth0").Attrs().MTU; mtu != 1400 {
		t.Errorf("eth0 MTU = %d, want 1400 from the lease", mtu)
	}
	wantResolv := "search lease.example\nnameserver 198.51.100.53\n"
	if got := readFile(t, filepath.Join(root, "etc/resolv.conf")); !strings.HasSuffix(got, wantResolv) {
		t.Errorf("resolv.conf = %q, want it to end with %q", got, wantResolv)
	}
	if got := readFile(t, filepath.Join(root, "etc/hostname")); got != "leasedhost\n" {
		t.Errorf("hostname = %q, want the DHCP one", got)
	}
	if got := readFile(t, filepath.Join(root, "etc/hosts")); !strings.Contains(got, "127.0.1.1\tleasedhost\n") {
		t.Errorf("hosts = %q, want 127.0.1.1 leasedhost", got)
	}
	ls := st.Leases()
	if len(ls) != 1 || ls[0].Link != "eth0" || ls[0].Expires.Before(time.Now().Add(time.Minute)) {
		t.Errorf("Leases() = %+v, want one on eth0 expiring in about 2m", ls)
	}
	if capt.count() == 0 || !strings.Contains(dm.leases(), "192.0.2.120") {
		t.Errorf("far end saw %d DHCP packets, leases %q; the capture must see the client", capt.count(), dm.leases())
	}
	saved, err := LoadStatus(root)
	if err != nil || len(saved.Leases) != 1 || saved.Leases[0].Address.String() != "192.0.2.120/24" {
		t.Errorf("LoadStatus() = %+v, %v; want the eth0 lease", saved, err)
	}
}

func TestHostnameFromConfigBeatsDHCP(t *testing.T) {
	tn := newTestNet(t)
	mac := tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"}, "--dhcp-host="+mac.String()+",leasedhost")
	root := t.TempDir()
	st, err := Apply(testCtx(t), Config{}, WithNetns(tn.near), WithRoot(root), WithHostname("confighost.example"))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	if got := readFile(t, filepath.Join(root, "etc/hostname")); got != "confighost.example\n" {
		t.Errorf("hostname = %q, want the configured one", got)
	}
	if got := readFile(t, filepath.Join(root, "etc/hosts")); !strings.Contains(got, "127.0.1.1\tconfighost.example confighost\n") {
		t.Errorf("hosts = %q", got)
	}
}

func TestStaticAndDHCPInParallel(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.veth("eth1", "peer1", "198.51.100.1/24")
	tn.veth("eth2", "peer2", "203.0.113.1/24")
	dm := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150", "peer1,198.51.100.100,198.51.100.150"},
		"--dhcp-option=tag:peer0,option:dns-server,192.0.2.53",
		"--dhcp-option=tag:peer1,option:dns-server,198.51.100.53")
	capt := tn.capture("peer2")
	root := t.TempDir()
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"eth*": {DHCP: ptr(true)},
		"eth2": {Address: "203.0.113.10/24"},
	}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	for _, c := range []struct{ link, prefix string }{{"eth0", "192.0.2.1"}, {"eth1", "198.51.100.1"}} {
		as := tn.addrs(c.link)
		if len(as) != 1 || !strings.HasPrefix(as[0], c.prefix) {
			t.Errorf("%s addresses = %v, want one lease in %sxx", c.link, as, c.prefix)
		}
	}
	if diff := cmp.Diff([]string{"203.0.113.10/24"}, tn.addrs("eth2")); diff != "" {
		t.Errorf("eth2 addresses (-want +got):\n%s", diff)
	}
	if n := dm.count("DHCPACK"); n != 2 {
		t.Errorf("dnsmasq sent %d DHCPACK, want 2 (one per DHCP link); log:\n%s", n, readFile(t, dm.log))
	}
	if n := capt.count(); n != 0 {
		t.Errorf("static eth2 sent %d DHCP packets, want none", n)
	}
	got := readFile(t, filepath.Join(root, "etc/resolv.conf"))
	if !strings.Contains(got, "nameserver 192.0.2.53\nnameserver 198.51.100.53\n") {
		t.Errorf("resolv.conf = %q, want both leases' servers in link order", got)
	}
}

// TestMultiNIC is RancherOS's multi_nic case (its addresses moved to the
// documentation ranges): eth0 on DHCP, and two static links that each name
// a default gateway, one with an IPv6 gateway but no IPv6 address.
func TestMultiNIC(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.veth("eth1", "peer1", "198.51.100.1/24")
	tn.veth("eth2", "peer2", "203.0.113.1/24")
	// dnsmasq answers on all three links, as qemu's user networks do: the
	// boot's early network takes a lease on each before the config says
	// eth1 and eth2 are static.
	tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150", "peer1,198.51.100.100,198.51.100.150", "peer2,203.0.113.100,203.0.113.150"})
	_, target1 := tn.listen("198.51.100.1")
	_, target2 := tn.listen("203.0.113.1")
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"eth0": {DHCP: ptr(true)},
		"eth1": {Address: "198.51.100.41/24", Gateway: "198.51.100.1", MTU: 1500, DHCP: ptr(false)},
		"eth2": {Address: "203.0.113.85/24", Gateway: "203.0.113.1", GatewayIPv6: "2001:db8:1234::", MTU: 1500, DHCP: ptr(false)},
	}}
	root := t.TempDir()
	early, err := Early(testCtx(t), true, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Early() error: %v", err)
	}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root), WithPrevious(early))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	sorted := cmpopts.SortSlices(func(a, b string) bool { return a < b })
	eth0 := "eth0 default via 192.0.2.1 proto 16 metric " + strconv.Itoa(dhcpMetric(tn.link("eth0").Attrs().Index))
	want := []string{
		eth0,
		// Both static gateways stay, each on its own link: the first
		// link's at metric 0, the next at 1.
		"eth1 default via 198.51.100.1 proto 4 metric 0",
		"eth2 default via 203.0.113.1 proto 4 metric 1",
		// No IPv6 address covers the gateway: it is taken as on the link
		// it was given for.
		"eth2 default via 2001:db8:1234:: proto 4 metric 1024 onlink",
	}
	snapshot := func() []string {
		var s []string
		for _, l := range []string{"eth0", "eth1", "eth2"} {
			for _, r := range tn.routes(l) {
				s = append(s, l+" "+r)
			}
		}
		return s
	}
	if diff := cmp.Diff(want, snapshot(), sorted); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	for _, l := range []string{"eth1", "eth2"} {
		if mtu := tn.link(l).Attrs().MTU; mtu != 1500 {
			t.Errorf("%s mtu = %d, want 1500", l, mtu)
		}
	}
	for _, a := range []string{target1, target2} {
		if err := tn.dial(a); err != nil {
			t.Errorf("dial %s: %v; the static link is not usable", a, err)
		}
	}
	// Applying again moves no route from one link to the other.
	routeEv := tn.watchRoutes()
	st2, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root), WithPrevious(st))
	if err != nil {
		t.Fatalf("second Apply() error: %v", err)
	}
	defer st2.Close()
	if got := routeEv.get(); len(got) != 0 {
		t.Errorf("second Apply changed routes %q, want none", got)
	}
	if diff := cmp.Diff(want, snapshot(), sorted); diff != "" {
		t.Errorf("routes after the second apply (-want +got):\n%s", diff)
	}
}

func TestSecondApplyChangesNothing(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.veth("eth1", "peer1", "198.51.100.1/24")
	dm := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"}, "--dhcp-option=option:router,192.0.2.1")
	root := t.TempDir()
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"eth0": {DHCP: ptr(true)},
		"eth1": {Addresses: []string{"198.51.100.10/24", "2001:db8::10/64"}, GatewayIPv6: "2001:db8::1", Routes: []Route{{Destination: "203.0.113.0/24", Gateway: "198.51.100.1"}}},
	}}
	snapshot := func() []string {
		var s []string
		for _, l := range []string{"eth0", "eth1"} {
			for _, a := range tn.addrs(l) {
				s = append(s, l+" "+a)
			}
			for _, r := range tn.routes(l) {
				s = append(s, l+" "+r)
			}
		}
		return s
	}
	st1, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("first Apply() error: %v", err)
	}
	first := snapshot()
	discovers := dm.count("DHCPDISCOVER")
	addrEv, routeEv := tn.watchAddrs(), tn.watchRoutes()
	st2, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root), WithPrevious(st1))
	if err != nil {
		t.Fatalf("second Apply() error: %v", err)
	}
	defer st2.Close()
	// Not even a replace with the same value: the kernel announced nothing.
	if got := append(addrEv.get(), routeEv.get()...); len(got) != 0 {
		t.Errorf("second Apply made kernel changes %q, want none", got)
	}
	if diff := cmp.Diff(first, snapshot()); diff != "" {
		t.Errorf("second Apply changed the network (-first +second):\n%s", diff)
	}
	if n := dm.count("DHCPDISCOVER"); n != discovers {
		t.Errorf("dnsmasq saw %d more DHCPDISCOVER, want none: the second apply keeps the lease", n-discovers)
	}
	// A fresh process (no previous state) gets the same lease back.
	st3, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("third Apply() error: %v", err)
	}
	defer st3.Close()
	if diff := cmp.Diff(first, snapshot()); diff != "" {
		t.Errorf("Apply without previous state changed the network (-first +third):\n%s", diff)
	}
}

func TestApplyRemovesWhatIsNoLongerWanted(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	root := t.TempDir()
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"eth0": {Address: "192.0.2.10/24", Addresses: []string{"192.0.2.11/24", "2001:db8::10/64"}, Gateway: "192.0.2.1",
			GatewayIPv6: "2001:db8::1", Routes: []Route{{Destination: "203.0.113.0/24", Gateway: "192.0.2.254"}}},
	}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	st.Close()
	wantRoutes := []string{
		"203.0.113.0/24 via 192.0.2.254 proto 4 metric 0",
		"default via 192.0.2.1 proto 4 metric 0",
		"default via 2001:db8::1 proto 4 metric 1024",
	}
	if diff := cmp.Diff(wantRoutes, tn.routes("eth0"), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("eth0 routes after first apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"192.0.2.10/24", "192.0.2.11/24", "2001:db8::10/64"}, tn.addrs("eth0"), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Fatalf("eth0 addresses after first apply (-want +got):\n%s", diff)
	}
	cfg.Interfaces["eth0"] = InterfaceConfig{Address: "192.0.2.10/24"}
	routeEv := tn.watchRoutes()
	st, err = Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("second Apply() error: %v", err)
	}
	st.Close()
	if diff := cmp.Diff([]string{"192.0.2.10/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses after removal (-want +got):\n%s", diff)
	}
	if got := tn.routes("eth0"); len(got) != 0 {
		t.Errorf("eth0 routes = %v, want the removed gateway and route gone", got)
	}
	if got := routeEv.get(); len(got) < 3 {
		t.Errorf("route events = %q, want at least the 3 removals (the watcher must see changes)", got)
	}
}

func TestConfiguredDNSSurvivesDHCP(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"},
		"--dhcp-option=option:dns-server,198.51.100.53,192.0.2.53",
		"--dhcp-option=option:domain-search,lease.example")
	root := t.TempDir()
	cfg := Config{
		Interfaces: map[string]InterfaceConfig{"eth0": {DHCP: ptr(true)}},
		DNS:        DNSConfig{Nameservers: []string{"192.0.2.53", "203.0.113.53"}, Search: []string{"config.example"}},
	}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	got := readFile(t, filepath.Join(root, "etc/resolv.conf"))
	want := "search config.example lease.example\nnameserver 192.0.2.53\nnameserver 203.0.113.53\nnameserver 198.51.100.53\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("resolv.conf = %q, want configured servers first, then DHCP's: %q", got, want)
	}
}

func TestBridgeWithVethMember(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	_, target := tn.listen("192.0.2.1")
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"br0":  {Bridge: "true", Address: "192.0.2.10/24"},
		"eth0": {Bridge: "br0"},
	}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	br := tn.link("br0")
	if br.Type() != "bridge" {
		t.Fatalf("br0 type = %q, want bridge", br.Type())
	}
	if got := tn.link("eth0").Attrs().MasterIndex; got != br.Attrs().Index {
		t.Errorf("eth0 master index = %d, want br0's %d", got, br.Attrs().Index)
	}
	if diff := cmp.Diff([]string{"192.0.2.10/24"}, tn.addrs("br0")); diff != "" {
		t.Errorf("br0 addresses (-want +got):\n%s", diff)
	}
	// The bridge needs a moment to forward (no STP: forwarding at once).
	var derr error
	for range 20 {
		if derr = tn.dial(target); derr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if derr != nil {
		t.Errorf("dial through the bridge: %v", derr)
	}
	// Out of the bridge again: eth0 leaves it and takes the address itself.
	st2, err := Apply(testCtx(t), Config{Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.11/24"}}}, WithNetns(tn.near), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatalf("second Apply() error: %v", err)
	}
	defer st2.Close()
	if got := tn.link("eth0").Attrs().MasterIndex; got != 0 {
		t.Errorf("eth0 master index = %d after leaving br0, want 0", got)
	}
	if diff := cmp.Diff([]string{"192.0.2.11/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses (-want +got):\n%s", diff)
	}
}

func TestMACMatching(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "")
	mac := tn.veth("eth1", "peer1", "")
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"mac=" + strings.ToUpper(mac.String()): {Address: "198.51.100.10/24", MTU: 1280},
		"eth0":                                 {Address: "192.0.2.10/24"},
	}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	if diff := cmp.Diff([]string{"198.51.100.10/24"}, tn.addrs("eth1")); diff != "" {
		t.Errorf("eth1 (matched by MAC) addresses (-want +got):\n%s", diff)
	}
	if mtu := tn.link("eth1").Attrs().MTU; mtu != 1280 {
		t.Errorf("eth1 MTU = %d, want 1280", mtu)
	}
	if diff := cmp.Diff([]string{"192.0.2.10/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses (-want +got):\n%s", diff)
	}
}

func TestDHCPTimeout(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.veth("eth1", "peer1", "198.51.100.1/24")
	tn.veth("eth2", "peer2", "203.0.113.1/24")
	// Two DHCP links without a server: in parallel they take one timeout.
	cfg := Config{
		Interfaces:  map[string]InterfaceConfig{"eth0": {DHCP: ptr(true)}, "eth2": {DHCP: ptr(true)}, "eth1": {Address: "198.51.100.10/24"}},
		DHCPTimeout: 2,
	}
	start := time.Now()
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(t.TempDir()))
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "dhcp on eth0") || !strings.Contains(err.Error(), "dhcp on eth2") {
		t.Errorf("Apply() error = %v, want DHCP failures on eth0 and eth2", err)
	}
	if st == nil {
		t.Fatal("Apply() state = nil, want the rest applied")
	}
	defer st.Close()
	// One after the other would take 4s.
	if took < 1900*time.Millisecond || took > 3500*time.Millisecond {
		t.Errorf("Apply took %v with dhcp_timeout 2 on two links, want about 2s (in parallel)", took)
	}
	if diff := cmp.Diff([]string{"198.51.100.10/24"}, tn.addrs("eth1")); diff != "" {
		t.Errorf("eth1 addresses (-want +got):\n%s", diff)
	}
}

func TestInvalidConfigAppliesNothing(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "")
	tn.veth("eth1", "peer1", "")
	root := t.TempDir()
	cfg := Config{Interfaces: map[string]InterfaceConfig{
		"eth0":  {Address: "192.0.2.10/24", Bond: "bond0"},
		"eth1":  {Address: "198.51.100.10"},
		"bond0": {BondOpts: map[string]string{"mode": "round-robin"}},
	}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(root))
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Apply() error = %v, want a *ValidationError", err)
	}
	if st != nil {
		t.Errorf("Apply() state = %v, want nil", st)
	}
	want := []Problem{
		{"interfaces.bond0.bond_opts.mode", `unknown bond mode "round-robin"`},
		{"interfaces.eth1.address", `"198.51.100.10" has no prefix length`},
	}
	if diff := cmp.Diff(want, verr.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	for _, l := range []string{"eth0", "eth1"} {
		if as := tn.addrs(l); len(as) != 0 {
			t.Errorf("%s addresses = %v, want none: nothing half-applied", l, as)
		}
		if tn.link(l).Attrs().Flags&1 != 0 {
			t.Errorf("%s is up, want untouched", l)
		}
	}
	if _, err := tn.hn.LinkByName("bond0"); err == nil {
		t.Error("bond0 exists, want nothing created")
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("root has %d entries, want no file written", len(ents))
	}
}

func TestHooksRunInOrder(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "")
	out := filepath.Join(t.TempDir(), "hooks")
	cfg := Config{
		Interfaces: map[string]InterfaceConfig{
			"eth0": {
				Address: "192.0.2.10/24",
				PreUp:   []string{"echo pre_up $IFACE >> " + out},
				PostUp:  []string{"echo post_up $IFACE $(ip -o link show $IFACE | grep -o 'state [A-Z]*') >> " + out},
			},
			// RancherOS's pre_cmds case hooks lo too; an anycast /32 is
			// the other reason to name it.
			"lo": {
				Address: "203.0.113.7/32",
				PreUp:   []string{"echo pre_up $IFACE >> " + out},
				PostUp:  []string{"echo post_up $IFACE >> " + out},
			},
			// A glob never matches lo (nor would take DHCP on it).
			"*": {PostUp: []string{"echo glob $IFACE >> " + out}},
		},
		PreCmds:  []string{"echo pre_cmds >> " + out},
		PostCmds: []string{"echo post_cmds >> " + out},
	}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	got := strings.Split(strings.TrimSpace(readFile(t, out)), "\n")
	// operstate in the namespace proves the hook ran inside it.
	want := []string{"pre_cmds", "pre_up eth0", "pre_up lo", "post_up eth0 state UP", "post_up lo", "post_cmds"}
	if !slices.Equal(got, want) {
		t.Errorf("hooks ran as %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{"127.0.0.1/8", "203.0.113.7/32", "::1/128"}, tn.addrs("lo"), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("lo addresses (-want +got):\n%s", diff)
	}
}

func TestNewLeaseReplacesOldAndStaticReplacesLease(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	root := t.TempDir()
	dhcp := Config{Interfaces: map[string]InterfaceConfig{"eth0": {DHCP: ptr(true)}}}
	first := tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.100"})
	st, err := Apply(testCtx(t), dhcp, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	st.Close()
	if diff := cmp.Diff([]string{"192.0.2.100/24"}, tn.addrs("eth0")); diff != "" {
		t.Fatalf("eth0 addresses (-want +got):\n%s", diff)
	}
	// Another server with another range, and a new process (no State).
	first.cmd.Process.Kill()
	first.cmd.Wait()
	tn.startDnsmasq([]string{"peer0,192.0.2.200,192.0.2.200"})
	st, err = Apply(testCtx(t), dhcp, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	st.Close()
	if diff := cmp.Diff([]string{"192.0.2.200/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses after a new lease (-want +got): the old lease must go:\n%s", diff)
	}
	// The same link made static, again by a new process: the lease goes.
	static := Config{Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.10/24"}}}
	st, err = Apply(testCtx(t), static, WithNetns(tn.near), WithRoot(root))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	st.Close()
	if diff := cmp.Diff([]string{"192.0.2.10/24"}, tn.addrs("eth0")); diff != "" {
		t.Errorf("eth0 addresses after going static (-want +got): DHCP and static must not both stay:\n%s", diff)
	}
	if got := tn.routes("eth0"); len(got) != 0 {
		t.Errorf("eth0 routes = %v, want the lease's gone", got)
	}
}

func TestKeepsAutoconfiguredIPv6(t *testing.T) {
	tn := newTestNet(t)
	tn.veth("eth0", "peer0", "")
	// What SLAAC leaves: an IPv6 address with a lifetime (not permanent).
	slaac, _ := netlink.ParseAddr("2001:db8:1::5054:ff:fe00:1/64")
	slaac.ValidLft, slaac.PreferedLft, slaac.Flags = 3600, 3600, unix.IFA_F_NODAD
	if err := tn.hn.AddrAdd(tn.link("eth0"), slaac); err != nil {
		t.Fatalf("add autoconfigured-like address: %v", err)
	}
	stale, _ := netlink.ParseAddr("2001:db8:2::9/64")
	stale.Flags = unix.IFA_F_NODAD
	if err := tn.hn.AddrAdd(tn.link("eth0"), stale); err != nil {
		t.Fatalf("add permanent address: %v", err)
	}
	cfg := Config{Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.10/24"}}}
	st, err := Apply(testCtx(t), cfg, WithNetns(tn.near), WithRoot(t.TempDir()))
	if err != nil {
		t.Fatalf("Apply() error: %v", err)
	}
	defer st.Close()
	want := []string{"192.0.2.10/24", "2001:db8:1:0:5054:ff:fe00:1/64"}
	if diff := cmp.Diff(want, tn.addrs("eth0"), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("eth0 addresses (-want +got): keep the router-advertised one, remove the unconfigured permanent one:\n%s", diff)
	}
}

// TestHostsFile: the hostname's 127.0.1.1 line replaces an earlier one
// and every other line of the file (a write_files /etc/hosts) is kept;
// without a file the localhost lines are made.
func TestHostsFile(t *testing.T) {
	for _, tc := range []struct{ name, old, host, want string }{
		{"no file", "", "node1", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tnode1\n"},
		{"user lines kept", "127.0.0.1 localhost\n198.51.100.7 db.example\n127.0.1.1 old old.example\n# end", "a.example",
			"127.0.0.1 localhost\n198.51.100.7 db.example\n# end\n127.0.1.1\ta.example a\n"},
		{"unchanged", "127.0.0.1 localhost\n127.0.1.1\tnode1\n", "node1", "127.0.0.1 localhost\n127.0.1.1\tnode1\n"},
	} {
		if got := string(hostsFile([]byte(tc.old), tc.host)); got != tc.want {
			t.Errorf("%s: hostsFile = %q, want %q", tc.name, got, tc.want)
		}
	}
}
