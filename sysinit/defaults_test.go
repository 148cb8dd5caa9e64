package sysinit

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestDefaultServicesComeUpInOrder runs the default services' definitions
// (images, labels, order, one-shot, restart, net: host) with harmless
// commands in place of what would change this machine (mdev, netconf,
// cloud-init, ros ntp, syslogd), the console's dropbear on a loopback port,
// and the real User Docker. It checks the start order and measures System
// Docker start to all services running.
func TestDefaultServicesComeUpInOrder(t *testing.T) {
	needEngine(t)
	imgs := testImages(t)
	e := newTestEnv(t)
	root := filepath.Join(e.dir, "root")
	cfg := testConfig(t, e, root)
	defaults := loadDefaults(t).Rancher.Services
	dockerSvc := cfg.Rancher.Services["docker"]
	cfg.Rancher.Services = defaults
	for name, s := range defaults {
		switch {
		case name == "docker":
			d := *dockerSvc
			d.Labels = s.Labels
			defaults[name] = &d
		case name == "console":
			s.Command = []string{"dropbear", "-F", "-E", "-s", "-w", "-R", "-p", "127.0.0.1:22022"}
			s.Volumes = nil
		case s.Labels["io.rancher.os.detach"] == "false":
			s.Command = []string{"sh", "-c", "sleep 0.3"}
			s.Volumes = nil
		default:
			s.Command = []string{"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"}
			s.Volumes = nil
		}
	}
	ctx := context.Background()
	t0 := time.Now()
	// PID 1's cloud-init-execute, as a step that takes 300 ms.
	var cieDone time.Time
	cie := func(ctx context.Context) error {
		time.Sleep(300 * time.Millisecond)
		cieDone = time.Now()
		return nil
	}
	eng, err := StartEngines(ctx, cfg, append(e.engineOptions(t, root, imgs), WithBootStep(CloudInitExecute, cie))...)
	if err != nil {
		t.Fatalf("StartEngines: %v", err)
	}
	defer eng.Shutdown(context.Background())
	took := time.Since(t0)
	if eng.StartErr != nil {
		t.Fatalf("default services failed: %v", eng.StartErr)
	}
	ucli, _ := NewClient(filepath.Join(root, "/var/run/docker.sock"))
	defer ucli.Close()
	// udev, network, syslog and ntp come after docker, which means after
	// User Docker answers: when the services are started, it does.
	if _, err := ucli.Ping(ctx, client.PingOptions{}); err != nil {
		t.Errorf("the services are started but User Docker does not answer: %v", err)
	}
	for time.Since(t0) < 60*time.Second {
		if _, err := ucli.Ping(ctx, client.PingOptions{}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("BENCH System Docker start to the %d default services started: %v; to User Docker answering: %v (%d OS images loaded)",
		len(eng.Started.Started), took.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), 3)

	times := map[string][2]time.Time{}
	for _, n := range []string{"udev", "network", "ntp", "syslog", "console", "docker"} {
		in, err := eng.System.Client.ContainerInspect(ctx, n, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatalf("service %s: %v", n, err)
		}
		st, _ := time.Parse(time.RFC3339Nano, in.Container.State.StartedAt)
		fin, _ := time.Parse(time.RFC3339Nano, in.Container.State.FinishedAt)
		times[n] = [2]time.Time{st, fin}
	}
	before := func(a, b string, aFinished bool) {
		ta := times[a][0]
		if aFinished {
			ta = times[a][1]
		}
		if !ta.Before(times[b][0]) {
			t.Errorf("%s (%v) did not come before %s started (%v)", a, ta, b, times[b][0])
		}
	}
	// What user-data configures (write_files, runcmd) is done before
	// the console and User Docker start; the rest wait for User Docker.
	for _, n := range []string{"console", "docker"} {
		if cieDone.IsZero() || !cieDone.Before(times[n][0]) {
			t.Errorf("cloud-init-execute (done %v) did not come before %s started (%v)", cieDone, n, times[n][0])
		}
	}
	for _, n := range []string{"udev", "network", "syslog", "ntp"} {
		before("docker", n, false)
	}

	// The console image's dropbear (Debian's, with its libraries) answers.
	c, err := net.DialTimeout("tcp", "127.0.0.1:22022", 5*time.Second)
	if err != nil {
		t.Fatalf("console's dropbear: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	banner, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(banner, "SSH-2.0-dropbear") {
		t.Errorf("console SSH banner = %q, want SSH-2.0-dropbear...", banner)
	}
}
