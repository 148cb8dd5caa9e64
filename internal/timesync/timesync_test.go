package timesync

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/ntp"
	"github.com/google/go-cmp/cmp"
)

// fakeServer answers NTPv4 client requests on 127.0.0.1 with its clock
// set skew away from ours.
type fakeServer struct {
	skew     time.Duration
	stratum  uint8
	leap     uint8
	refID    string
	rootDisp time.Duration
	// badOrigin answers with an origin timestamp that is not the
	// request's transmit timestamp, as a spoofed or stale reply would.
	badOrigin bool
}

// start listens on a loopback port and returns its address.
func (f fakeServer) start(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1024)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n < 48 || buf[0]&7 != 3 { // not a client-mode request
				continue
			}
			pc.WriteToUDP(f.answer(buf[:48]), from)
		}
	}()
	return pc.LocalAddr().String()
}

func (f fakeServer) answer(req []byte) []byte {
	now := time.Now().Add(f.skew)
	b := make([]byte, 48)
	b[0] = f.leap<<6 | 4<<3 | 4 // LI, version 4, server mode
	b[1] = f.stratum
	b[2] = 6    // poll 2^6 s
	b[3] = 0xec // precision 2^-20 s
	binary.BigEndian.PutUint32(b[4:], ntpShort(time.Millisecond))
	binary.BigEndian.PutUint32(b[8:], ntpShort(f.rootDisp))
	copy(b[12:16], f.refID)
	binary.BigEndian.PutUint64(b[16:], ntpTime(now.Add(-time.Minute))) // reference
	copy(b[24:32], req[40:48])                                         // origin = the client's transmit
	if f.badOrigin {
		b[31] ^= 1
	}
	binary.BigEndian.PutUint64(b[32:], ntpTime(now)) // receive
	binary.BigEndian.PutUint64(b[40:], ntpTime(now)) // transmit
	return b
}

// ntpTime is t as a 64-bit NTP timestamp: seconds since 1900, 32-bit fraction.
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2208988800
	sec := uint64(t.Unix() + unixToNTP)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// ntpShort is d in NTP's 16.16 short format.
func ntpShort(d time.Duration) uint32 {
	return uint32(d.Seconds() * 65536)
}

// closedPort returns a loopback UDP address nothing listens on: a query
// to it fails at once with "connection refused".
func closedPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// recorder is a Clock that records what it was asked to do.
type recorder struct {
	mu    sync.Mutex
	calls []string
	steps []time.Duration
	slews []time.Duration
	err   error
}

func (r *recorder) Step(d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "step")
	r.steps = append(r.steps, d)
	return r.err
}

func (r *recorder) Slew(d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "slew")
	r.slews = append(r.slews, d)
	return r.err
}

func good(skew time.Duration) fakeServer {
	return fakeServer{skew: skew, stratum: 2, refID: "\xc0\x00\x02\x01", rootDisp: 10 * time.Millisecond}
}

// near reports whether got is within 10 ms of want: the fake answers on
// loopback, so the measured offset is its skew to well under that.
func near(got, want time.Duration) bool {
	d := got - want
	return d > -10*time.Millisecond && d < 10*time.Millisecond
}

func TestSyncStepsOrSlews(t *testing.T) {
	tests := []struct {
		name     string
		skew     time.Duration
		wantCall string
	}{
		{"5 s ahead is stepped", 5 * time.Second, "step"},
		{"5 s behind is stepped", -5 * time.Second, "step"},
		{"20 ms ahead is slewed", 20 * time.Millisecond, "slew"},
		{"20 ms behind is slewed", -20 * time.Millisecond, "slew"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := good(tt.skew).start(t)
			clk := &recorder{}
			res, err := New([]string{addr}, WithClock(clk), WithTimeout(time.Second)).Sync(context.Background())
			if err != nil {
				t.Fatalf("Sync() = %v", err)
			}
			if diff := cmp.Diff([]string{tt.wantCall}, clk.calls); diff != "" {
				t.Fatalf("clock calls (-want +got):\n%s", diff)
			}
			asked := append(clk.steps, clk.slews...)[0]
			if !near(asked, tt.skew) || res.Offset != asked {
				t.Errorf("clock asked to move %v (result offset %v), want about %v", asked, res.Offset, tt.skew)
			}
			if res.Stepped != (tt.wantCall == "step") || res.Server != addr || res.Stratum != 2 {
				t.Errorf("Sync() = %+v, want server %s, stratum 2, stepped %v", res, addr, tt.wantCall == "step")
			}
		})
	}
}

func TestSyncSkipsUnusableServers(t *testing.T) {
	kod := fakeServer{skew: 3 * time.Second, stratum: 0, leap: 3, refID: "RATE"}
	unsynced := good(3 * time.Second)
	unsynced.leap = 3
	badOrigin := good(3 * time.Second)
	badOrigin.badOrigin = true
	servers := []string{kod.start(t), unsynced.start(t), badOrigin.start(t), good(20 * time.Millisecond).start(t)}

	clk := &recorder{}
	res, err := New(servers, WithClock(clk), WithTimeout(time.Second)).Sync(context.Background())
	if err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if res.Server != servers[3] || res.Stepped || len(clk.steps) != 0 || len(clk.slews) != 1 || !near(clk.slews[0], 20*time.Millisecond) {
		t.Fatalf("Sync() = %+v, clock %+v; want a 20 ms slew from %s only", res, clk, servers[3])
	}
	want := []error{ntp.ErrKissOfDeath, ntp.ErrInvalidLeapSecond, ntp.ErrServerResponseMismatch}
	if len(res.Skipped) != len(want) {
		t.Fatalf("Skipped = %v, want %d servers", res.Skipped, len(want))
	}
	for i, se := range res.Skipped {
		if se.Server != servers[i] || !errors.Is(se, want[i]) {
			t.Errorf("Skipped[%d] = %v, want %s: %v", i, se, servers[i], want[i])
		}
	}
	if !strings.Contains(res.Skipped[0].Error(), "kiss code RATE") {
		t.Errorf("Skipped[0] = %q, want the kiss code", res.Skipped[0])
	}
}

func TestSyncPicksLowestRootDistance(t *testing.T) {
	far := good(5 * time.Second)
	far.rootDisp = 2 * time.Second
	servers := []string{far.start(t), good(20 * time.Millisecond).start(t)}
	clk := &recorder{}
	res, err := New(servers, WithClock(clk), WithTimeout(time.Second)).Sync(context.Background())
	if err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if res.Server != servers[1] || len(clk.slews) != 1 || len(clk.steps) != 0 || len(res.Skipped) != 0 {
		t.Errorf("Sync() = %+v, clock %+v; want a slew by the server with 10 ms root dispersion, %s", res, clk, servers[1])
	}
}

func TestSyncNoServerAnswers(t *testing.T) {
	kod := fakeServer{stratum: 0, leap: 3, refID: "DENY"}
	servers := []string{closedPort(t), closedPort(t), kod.start(t)}
	clk := &recorder{}
	t0 := time.Now()
	_, err := New(servers, WithClock(clk), WithTimeout(2*time.Second)).Sync(context.Background())
	if took := time.Since(t0); took > time.Second {
		t.Errorf("Sync took %v; a closed port should fail at once", took)
	}
	var nse *NoServerError
	if !errors.As(err, &nse) || len(nse.Errors) != len(servers) {
		t.Fatalf("Sync() = %v, want a NoServerError for all %d servers", err, len(servers))
	}
	for _, s := range servers {
		if !strings.Contains(err.Error(), s+": ") {
			t.Errorf("Sync() = %q, want %s's error in it", err, s)
		}
	}
	if !strings.Contains(err.Error(), "connection refused") || !errors.Is(err, ntp.ErrKissOfDeath) {
		t.Errorf("Sync() = %q, want each server's own error", err)
	}
	if len(clk.calls) != 0 {
		t.Errorf("clock calls = %v, want none", clk.calls)
	}
}

func TestSyncTimesOutOnSilentServer(t *testing.T) {
	// Bound but never read: the query's datagram sits in the socket buffer.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	t0 := time.Now()
	_, err = New([]string{pc.LocalAddr().String()}, WithClock(&recorder{}), WithTimeout(100*time.Millisecond)).Sync(context.Background())
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Sync() = %v, want a timeout", err)
	}
	if took := time.Since(t0); took > time.Second {
		t.Errorf("Sync took %v with a 100ms timeout", took)
	}
}

func TestSyncReportsClockError(t *testing.T) {
	addr := good(5 * time.Second).start(t)
	clk := &recorder{err: errors.New("operation not permitted")}
	_, err := New([]string{addr}, WithClock(clk), WithTimeout(time.Second)).Sync(context.Background())
	if err == nil || !errors.Is(err, clk.err) || !strings.Contains(err.Error(), addr) {
		t.Errorf("Sync() = %v, want the clock's error, with the server", err)
	}
}

func TestSyncReturnsWhenContextDone(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = New([]string{pc.LocalAddr().String()}, WithClock(&recorder{}), WithTimeout(5*time.Second)).Sync(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > time.Second {
		t.Errorf("Sync() = %v after %v, want the context's error at once", err, time.Since(t0))
	}
}

func TestSchedule(t *testing.T) {
	c := New(nil)
	tests := []struct {
		poll             time.Duration
		stable           bool
		wantWait, wantNx time.Duration
	}{
		{64 * time.Second, true, 64 * time.Second, 128 * time.Second},
		{512 * time.Second, true, 512 * time.Second, 1024 * time.Second},
		{1024 * time.Second, true, 1024 * time.Second, 1024 * time.Second},
		{1024 * time.Second, false, 64 * time.Second, 64 * time.Second},
		{64 * time.Second, false, 64 * time.Second, 64 * time.Second},
	}
	for _, tt := range tests {
		wait, next := c.schedule(tt.poll, tt.stable)
		if wait != tt.wantWait || next != tt.wantNx {
			t.Errorf("schedule(%v, %v) = %v, %v, want %v, %v", tt.poll, tt.stable, wait, next, tt.wantWait, tt.wantNx)
		}
	}
}

func TestRunKeepsSyncing(t *testing.T) {
	addr := good(20 * time.Millisecond).start(t)
	clk := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	New([]string{addr}, WithClock(clk), WithTimeout(time.Second), WithPoll(5*time.Millisecond, 20*time.Millisecond)).Run(ctx)
	clk.mu.Lock()
	n := len(clk.slews)
	clk.mu.Unlock()
	// 5+10+20+20+... ms: at least 5 rounds in 300 ms, and not one per
	// 5 ms (60), which would mean the interval did not back off.
	if n < 5 || n > 30 {
		t.Errorf("Run made %d slews in 300ms with polls of 5ms doubling to 20ms", n)
	}
}

func TestRunRetriesWhenNoServerAnswers(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	clk := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	New([]string{closedPort(t)}, WithClock(clk), WithLogger(log), WithTimeout(time.Second), WithPoll(10*time.Millisecond, time.Second)).Run(ctx)
	if n := strings.Count(logs.String(), "time sync failed"); n < 3 || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("Run logged %d failures in 100ms with a 10ms retry, want several naming the error:\n%s", n, logs.String())
	}
	if len(clk.calls) != 0 {
		t.Errorf("clock calls = %v, want none", clk.calls)
	}
}

func TestParseConf(t *testing.T) {
	conf := `# from the RancherOS docs
server 0.pool.ntp.org iburst
server -4 1.pool.ntp.org
pool 2.pool.ntp.org   # trailing comment
peer 192.0.2.123
restrict default nomodify nopeer noquery limited kod
restrict 127.0.0.1
driftfile /var/lib/ntp/drift
server
#server commented.example
`
	want := []string{"0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org", "192.0.2.123"}
	if diff := cmp.Diff(want, ParseConf([]byte(conf))); diff != "" {
		t.Errorf("ParseConf (-want +got):\n%s", diff)
	}
	if got := ParseConf(nil); got != nil {
		t.Errorf("ParseConf(nil) = %v, want nil", got)
	}
}

// BenchmarkSync is one round against three loopback servers: the cost of
// the client itself, without a network in between.
func BenchmarkSync(b *testing.B) {
	servers := []string{good(time.Millisecond).start(b), good(2 * time.Millisecond).start(b), good(3 * time.Millisecond).start(b)}
	c := New(servers, WithClock(&recorder{}), WithTimeout(time.Second))
	for b.Loop() {
		if _, err := c.Sync(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
