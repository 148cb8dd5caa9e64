package netconf

import (
	"context"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// benchUsable measures, per op, the time from calling Apply to a TCP
// connection from the configured address to the far end succeeding
// (ms-to-usable), and to Apply returning after it also wrote resolv.conf
// and the status file (ms-apply-returns).
func benchUsable(b *testing.B, tn *testNet, cfg Config, target string) {
	root := b.TempDir()
	ctx := context.Background()
	var applyTotal, usableTotal time.Duration
	for b.Loop() {
		b.StopTimer()
		l := tn.link("eth0")
		as, _ := tn.hn.AddrList(l, netlink.FAMILY_V4)
		for _, a := range as {
			tn.hn.AddrDel(l, &a)
		}
		b.StartTimer()
		start := time.Now()
		type result struct {
			st  *State
			err error
			d   time.Duration
		}
		done := make(chan result, 1)
		go func() {
			st, err := Apply(ctx, cfg, WithNetns(tn.near), WithRoot(root))
			done <- result{st, err, time.Since(start)}
		}()
		// Usable: the first connection from the new address succeeds,
		// polled while Apply is still running.
		for tn.dial(target) != nil {
			if time.Since(start) > 5*time.Second {
				b.Fatalf("%s not reachable 5s after Apply", target)
			}
			time.Sleep(200 * time.Microsecond)
		}
		usableTotal += time.Since(start)
		r := <-done
		applyTotal += r.d
		if r.err != nil {
			b.Fatalf("Apply() error: %v", r.err)
		}
		st := r.st
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(usableTotal.Microseconds())/1000/float64(b.N), "ms-to-usable/op")
	b.ReportMetric(float64(applyTotal.Microseconds())/1000/float64(b.N), "ms-apply-returns/op")
}

func BenchmarkApplyStaticUsable(b *testing.B) {
	tn := newTestNet(b)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	_, target := tn.listen("192.0.2.1")
	cfg := Config{Interfaces: map[string]InterfaceConfig{"eth0": {Address: "192.0.2.10/24"}}}
	// The first apply brings the link up (the kernel's link watcher may
	// hold packets up to a second); the loop measures address to usable.
	st, err := Apply(context.Background(), cfg, WithNetns(tn.near), WithRoot(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	benchUsable(b, tn, cfg, target)
}

func BenchmarkApplyDHCPUsable(b *testing.B) {
	tn := newTestNet(b)
	tn.veth("eth0", "peer0", "192.0.2.1/24")
	tn.startDnsmasq([]string{"peer0,192.0.2.100,192.0.2.150"}, "--dhcp-option=option:router,192.0.2.1")
	_, target := tn.listen("192.0.2.1")
	cfg := Config{Interfaces: map[string]InterfaceConfig{"eth0": {DHCP: ptr(true)}}}
	st, err := Apply(context.Background(), cfg, WithNetns(tn.near), WithRoot(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	benchUsable(b, tn, cfg, target)
}
