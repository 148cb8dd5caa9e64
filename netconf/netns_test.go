package netconf

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const dnsmasqPath = "/usr/sbin/dnsmasq"

// testNet is two fresh network namespaces: near, where Apply runs, and
// far (named, for `ip netns exec`), where dnsmasq serves DHCP. Nothing
// touches the test process's own namespace.
type testNet struct {
	t       testing.TB
	near    netns.NsHandle
	far     netns.NsHandle
	farName string
	hn, hf  *netlink.Handle
	dir     string
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
}

func needDnsmasq(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(dnsmasqPath); err != nil {
		t.Skipf("needs %s (Debian dnsmasq-base, in .ci/deps): %v", dnsmasqPath, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2, in .ci/deps) to run dnsmasq in a namespace")
	}
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	needRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netns.Get: %v", err)
	}
	defer orig.Close()
	tn := &testNet{t: t, dir: t.TempDir(), farName: fmt.Sprintf("berth-nc-%08x", rand.Uint32())}
	tn.near, err = netns.New()
	if err != nil {
		t.Fatalf("netns.New: %v", err)
	}
	tn.far, err = netns.NewNamed(tn.farName)
	if serr := netns.Set(orig); serr != nil {
		// This thread is in a test namespace now: never unlock it.
		runtime.LockOSThread()
		t.Fatalf("return to the original netns: %v", serr)
	}
	if err != nil {
		t.Fatalf("netns.NewNamed: %v", err)
	}
	t.Cleanup(func() {
		tn.hn.Close()
		tn.hf.Close()
		tn.near.Close()
		tn.far.Close()
		netns.DeleteNamed(tn.farName)
	})
	if tn.hn, err = netlink.NewHandleAt(tn.near); err != nil {
		t.Fatalf("netlink handle (near): %v", err)
	}
	if tn.hf, err = netlink.NewHandleAt(tn.far); err != nil {
		t.Fatalf("netlink handle (far): %v", err)
	}
	for _, h := range []*netlink.Handle{tn.hn, tn.hf} {
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatalf("find lo: %v", err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatalf("set lo up: %v", err)
		}
	}
	return tn
}

// veth makes link name in near with its peer in far, the peer up with
// farAddr (CIDR), and returns the near link's MAC.
func (tn *testNet) veth(name, peer, farAddr string) net.HardwareAddr {
	tn.t.Helper()
	mac := net.HardwareAddr{0x52, 0x54, 0x00, byte(rand.Uint32()), byte(rand.Uint32()), byte(rand.Uint32())}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.HardwareAddr = mac
	if err := tn.hn.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peer, PeerNamespace: netlink.NsFd(tn.far)}); err != nil {
		tn.t.Fatalf("add veth %s/%s: %v", name, peer, err)
	}
	p, err := tn.hf.LinkByName(peer)
	if err != nil {
		tn.t.Fatalf("find peer %s: %v", peer, err)
	}
	if farAddr != "" {
		a, err := netlink.ParseAddr(farAddr)
		if err != nil {
			tn.t.Fatal(err)
		}
		if err := tn.hf.AddrAdd(p, a); err != nil {
			tn.t.Fatalf("add %s to %s: %v", farAddr, peer, err)
		}
	}
	if err := tn.hf.LinkSetUp(p); err != nil {
		tn.t.Fatalf("set %s up: %v", peer, err)
	}
	return mac
}

// addrs lists the global addresses of a near link as CIDR strings.
func (tn *testNet) addrs(name string) []string {
	tn.t.Helper()
	l, err := tn.hn.LinkByName(name)
	if err != nil {
		tn.t.Fatalf("find %s: %v", name, err)
	}
	as, err := tn.hn.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		tn.t.Fatalf("list addresses of %s: %v", name, err)
	}
	var out []string
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, prefixOf(a.IPNet).String())
	}
	return out
}

// routes lists "dst via gw proto P metric M" of a near link, Berth's only.
func (tn *testNet) routes(name string) []string {
	tn.t.Helper()
	l, err := tn.hn.LinkByName(name)
	if err != nil {
		tn.t.Fatalf("find %s: %v", name, err)
	}
	rs, err := tn.hn.RouteList(l, netlink.FAMILY_ALL)
	if err != nil {
		tn.t.Fatalf("list routes: %v", err)
	}
	var out []string
	for _, r := range rs {
		if r.Protocol != protoStatic && r.Protocol != protoDHCP {
			continue
		}
		dst := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 {
				dst = r.Dst.String()
			}
		}
		s := dst
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		s = fmt.Sprintf("%s proto %d metric %d", s, r.Protocol, r.Priority)
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		out = append(out, s)
	}
	return out
}

func (tn *testNet) link(name string) netlink.Link {
	tn.t.Helper()
	l, err := tn.hn.LinkByName(name)
	if err != nil {
		tn.t.Fatalf("find %s: %v", name, err)
	}
	return l
}

// in runs fn on a thread inside ns.
func in(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is discarded (never unlocked) once it entered ns.
		if err := netns.Set(ns); err != nil {
			t.Errorf("enter netns: %v", err)
			return
		}
		fn()
	}()
	<-done
}

// reachable reports whether a TCP listener in far at addr:port accepts a
// connection from near: the configured address is usable.
func (tn *testNet) listen(addr string) (net.Listener, string) {
	tn.t.Helper()
	var ln net.Listener
	var err error
	in(tn.t, tn.far, func() { ln, err = net.Listen("tcp", net.JoinHostPort(addr, "0")) })
	if err != nil {
		tn.t.Fatalf("listen in far netns: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tn.t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().String()
}

// dial connects from the near namespace.
func (tn *testNet) dial(addr string) error {
	var err error
	in(tn.t, tn.near, func() {
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
	})
	return err
}

// dnsmasq is a DHCP server in the far namespace.
type dnsmasq struct {
	dir   string
	cmd   *exec.Cmd
	lease string
	log   string
}

// startDnsmasq serves DHCP on the far-end links given; each range is
// "iface,start,end" and extra are more dnsmasq flags.
func (tn *testNet) startDnsmasq(ranges []string, extra ...string) *dnsmasq {
	tn.t.Helper()
	needDnsmasq(tn.t)
	dir, err := os.MkdirTemp(tn.dir, "dnsmasq")
	if err != nil {
		tn.t.Fatal(err)
	}
	d := &dnsmasq{dir: dir, lease: filepath.Join(dir, "leases"), log: filepath.Join(dir, "log")}
	args := []string{"netns", "exec", tn.farName, dnsmasqPath,
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-ping", "--bind-interfaces",
		"--port=0", "--user=root", "--no-hosts", "--no-resolv", "--log-dhcp",
		"--log-facility=" + d.log, "--dhcp-leasefile=" + d.lease,
		"--pid-file=" + filepath.Join(dir, "pid"), "--dhcp-authoritative", "--except-interface=lo"}
	for _, r := range ranges {
		f := strings.Split(r, ",")
		args = append(args, "--interface="+f[0], fmt.Sprintf("--dhcp-range=%s,%s,%s,255.255.255.0,2m", f[0], f[1], f[2]))
	}
	args = append(args, extra...)
	d.cmd = exec.Command("ip", args...)
	var stderr bytes.Buffer
	d.cmd.Stderr = &stderr
	if err := d.cmd.Start(); err != nil {
		tn.t.Fatalf("start dnsmasq: %v", err)
	}
	tn.t.Cleanup(func() {
		d.cmd.Process.Signal(unix.SIGTERM)
		d.cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(d.log)
		if bytes.Contains(b, []byte("DHCP, IP range")) {
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(d.log)
	tn.t.Fatalf("dnsmasq did not start: %s %s", stderr.String(), b)
	return nil
}

// count counts log lines with s ("DHCPDISCOVER", "DHCPREQUEST").
func (d *dnsmasq) count(s string) int {
	b, _ := os.ReadFile(d.log)
	return bytes.Count(b, []byte(s+"("))
}

func (d *dnsmasq) leases() string {
	b, _ := os.ReadFile(d.lease)
	return string(b)
}

// capture counts UDP packets to port 67 arriving on a far-end link, with
// an AF_PACKET socket: proof of what the near end sent, independent of
// dnsmasq.
type capture struct {
	mu   sync.Mutex
	n    int
	conn *packet.Conn
	done chan struct{}
}

func (tn *testNet) capture(peer string) *capture {
	tn.t.Helper()
	p, err := tn.hf.LinkByName(peer)
	if err != nil {
		tn.t.Fatalf("find %s: %v", peer, err)
	}
	a := p.Attrs()
	c := &capture{done: make(chan struct{})}
	in(tn.t, tn.far, func() {
		c.conn, err = packet.Listen(&net.Interface{Index: a.Index, Name: a.Name, HardwareAddr: a.HardwareAddr}, packet.Datagram, unix.ETH_P_IP, nil)
	})
	if err != nil {
		tn.t.Fatalf("capture on %s: %v", peer, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		for {
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			b := buf[:n]
			if n < 28 || b[0]>>4 != 4 || b[9] != unix.IPPROTO_UDP {
				continue
			}
			ihl := int(b[0]&0xf) * 4
			if n >= ihl+4 && b[ihl+2] == 0 && b[ihl+3] == 67 {
				c.mu.Lock()
				c.n++
				c.mu.Unlock()
			}
		}
	}()
	tn.t.Cleanup(func() { c.conn.Close(); <-c.done })
	return c
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
