package sysinit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/moby/moby/client"
)

// SystemDockerDefaults are the System Docker settings a config leaves
// unset.
func SystemDockerDefaults() cloudinit.Engine {
	f := false
	return cloudinit.Engine{
		Host:          []string{"unix:///var/run/system-docker.sock"},
		DataRoot:      "/var/lib/system-docker",
		ExecRoot:      "/var/run/system-docker",
		PidFile:       "/var/run/system-docker.pid",
		Bridge:        "none",
		StorageDriver: "overlay2",
		Iptables:      &f,
		IPForward:     &f,
		UserlandProxy: &f,
	}
}

// UserDockerDefaults are the User Docker settings a config leaves unset.
func UserDockerDefaults() cloudinit.Engine {
	return cloudinit.Engine{
		Host:          []string{"unix:///var/run/docker.sock"},
		DataRoot:      "/var/lib/docker",
		ExecRoot:      "/var/run/docker",
		PidFile:       "/var/run/docker.pid",
		StorageDriver: "overlay2",
		Group:         "docker",
	}
}

// mergeEngine fills the zero fields of e from d.
func mergeEngine(e, d cloudinit.Engine) cloudinit.Engine {
	if len(e.Host) == 0 {
		e.Host = d.Host
	}
	if e.DataRoot == "" {
		e.DataRoot = e.Graph
	}
	if e.DataRoot == "" {
		e.DataRoot = d.DataRoot
	}
	str := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	str(&e.ExecRoot, d.ExecRoot)
	str(&e.PidFile, d.PidFile)
	str(&e.Bridge, d.Bridge)
	str(&e.StorageDriver, d.StorageDriver)
	str(&e.Group, d.Group)
	str(&e.LogDriver, d.LogDriver)
	bp := func(p **bool, v *bool) {
		if *p == nil {
			*p = v
		}
	}
	bp(&e.Iptables, d.Iptables)
	bp(&e.IPForward, d.IPForward)
	bp(&e.UserlandProxy, d.UserlandProxy)
	bp(&e.LiveRestore, d.LiveRestore)
	return e
}

// DockerdArgs renders one engine's settings (merged over defaults) as
// dockerd flags. Args (RancherOS's argv, possibly starting with "daemon")
// come first, then the typed keys, then extra_args.
func DockerdArgs(e, defaults cloudinit.Engine) []string {
	e = mergeEngine(e, defaults)
	var a []string
	for i, s := range e.Args {
		if i == 0 && (s == "daemon" || s == "dockerd" || strings.HasSuffix(s, "/dockerd")) {
			continue
		}
		a = append(a, s)
	}
	for _, h := range e.Host {
		a = append(a, "--host="+h)
	}
	flag := func(name, v string) {
		if v != "" {
			a = append(a, "--"+name+"="+v)
		}
	}
	boolFlag := func(name string, v *bool) {
		if v != nil {
			a = append(a, fmt.Sprintf("--%s=%t", name, *v))
		}
	}
	flag("data-root", e.DataRoot)
	flag("exec-root", e.ExecRoot)
	flag("pidfile", e.PidFile)
	flag("storage-driver", e.StorageDriver)
	flag("bridge", e.Bridge)
	flag("bip", e.BIP)
	flag("group", e.Group)
	flag("config-file", e.ConfigFile)
	flag("containerd", e.Containerd)
	flag("log-driver", e.LogDriver)
	keys := make([]string, 0, len(e.LogOpts))
	for k := range e.LogOpts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a = append(a, "--log-opt="+k+"="+e.LogOpts[k])
	}
	for _, r := range e.InsecureRegistry {
		a = append(a, "--insecure-registry="+r)
	}
	flag("registry-mirror", e.RegistryMirror)
	boolFlag("iptables", e.Iptables)
	boolFlag("ip-forward", e.IPForward)
	boolFlag("userland-proxy", e.UserlandProxy)
	boolFlag("live-restore", e.LiveRestore)
	boolFlag("selinux-enabled", e.SelinuxEnabled)
	if e.Debug != nil && *e.Debug {
		a = append(a, "--debug")
	}
	if e.TLS {
		if len(e.TLSArgs) > 0 {
			a = append(a, e.TLSArgs...)
		} else {
			a = append(a, "--tlsverify",
				"--tlscacert=/etc/docker/tls/ca.pem",
				"--tlscert=/etc/docker/tls/server-cert.pem",
				"--tlskey=/etc/docker/tls/server-key.pem")
		}
	}
	return append(a, e.ExtraArgs...)
}

// socketPath returns the unix socket of the first unix:// host.
func socketPath(e cloudinit.Engine) (string, error) {
	for _, h := range e.Host {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("engine has no unix socket among hosts %v", e.Host)
}

// NewClient returns a Docker API client on a unix socket. The client
// negotiates the API version (Debian's dockerd 20.10 speaks 1.41).
func NewClient(socket string) (*client.Client, error) {
	c, err := client.New(client.WithHost("unix://" + socket))
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", socket, err)
	}
	return c, nil
}

// Daemon is one dockerd run as a child process and kept alive: when it
// dies it is started again with backoff, and OnRestart runs once it
// answers again.
type Daemon struct {
	daemonConfig
	// Client talks to this daemon.
	Client *client.Client

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current process exits
	stopping bool
	starts   int
	done     chan struct{} // closed when run returns
}

// daemonConfig is what StartDaemon needs.
type daemonConfig struct {
	name      string
	bin       string
	args      []string
	env       []string
	logPath   string
	socket    string
	execRoot  string
	log       *slog.Logger
	pingLimit time.Duration
	onRestart func(ctx context.Context)
	// pdeathsig kills dockerd when the thread that started it exits
	// (tests, so a crashed test leaves no daemon behind).
	pdeathsig bool
}

// startDaemon starts dockerd and returns once it answers /_ping, or with
// an error if it exits first or the deadline passes. It keeps restarting
// the daemon until ctx is cancelled or Stop is called.
func startDaemon(ctx context.Context, c daemonConfig) (*Daemon, error) {
	cli, err := NewClient(c.socket)
	if err != nil {
		return nil, err
	}
	d := &Daemon{daemonConfig: c, Client: cli, done: make(chan struct{})}
	if err := d.spawn(); err != nil {
		return nil, err
	}
	if err := d.waitPing(ctx, d.pingLimit); err != nil {
		d.Stop(context.Background(), 5*time.Second)
		return nil, err
	}
	go d.run(ctx)
	return d, nil
}

func (d *Daemon) spawn() error {
	if err := os.MkdirAll(filepath.Dir(d.logPath), 0o755); err != nil {
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	if err := os.MkdirAll(filepath.Dir(d.socket), 0o755); err != nil {
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("start %s: log: %w", d.name, err)
	}
	cmd := exec.Command(d.bin, d.args...)
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a signal to PID 1's group does not reach it,
	// and shutdown stops it in order.
	// No Pdeathsig: it fires when the OS thread that forked exits, which a
	// goroutine ending while locked to its thread (netlink, netns) causes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if d.pdeathsig {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	logf.Close()
	exited := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.exited = cmd, exited
	d.starts++
	d.mu.Unlock()
	d.log.Info("engine started", "engine", d.name, "pid", cmd.Process.Pid, "cmd", d.bin+" "+strings.Join(d.args, " "), "at", start.Format(time.RFC3339Nano))
	go func() {
		err := cmd.Wait()
		d.log.Info("engine exited", "engine", d.name, "pid", cmd.Process.Pid, "err", err)
		close(exited)
	}()
	return nil
}

// waitPing polls /_ping until it answers, the process exits, or limit
// passes.
func (d *Daemon) waitPing(ctx context.Context, limit time.Duration) error {
	d.mu.Lock()
	exited := d.exited
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t0 := time.Now()
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, err := d.Client.Ping(pctx, client.PingOptions{})
		pcancel()
		if err == nil {
			d.log.Info("engine ready", "engine", d.name, "after", time.Since(t0).Round(time.Millisecond))
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("start %s: dockerd exited before answering /_ping (see %s): %s", d.name, d.logPath, tail(d.logPath))
		case <-ctx.Done():
			return fmt.Errorf("start %s: no answer on %s within %s: %w", d.name, d.socket, limit, err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// run restarts dockerd with backoff whenever it dies.
func (d *Daemon) run(ctx context.Context) {
	defer close(d.done)
	b := newBackoff(time.Second, 30*time.Second, time.Minute)
	for {
		d.mu.Lock()
		exited := d.exited
		d.mu.Unlock()
		var upSince = time.Now()
		select {
		case <-ctx.Done():
			return
		case <-exited:
		}
		d.mu.Lock()
		stopping := d.stopping
		d.mu.Unlock()
		if stopping {
			return
		}
		delay := b.next(time.Since(upSince))
		d.log.Warn("engine died; restarting", "engine", d.name, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		d.killGroup()
		d.cleanup()
		if err := d.spawn(); err != nil {
			d.log.Error("engine restart failed", "engine", d.name, "err", err)
			continue
		}
		if err := d.waitPing(ctx, d.pingLimit); err != nil {
			d.log.Error("engine restart failed", "engine", d.name, "err", err)
			continue
		}
		if d.onRestart != nil {
			d.onRestart(ctx)
		}
	}
}

// killGroup kills what is left of a dead dockerd: its process group and
// the containerd it started (in a session of its own), which would
// otherwise hold its socket and database and stop the next dockerd from
// starting its own. Container shims survive.
func (d *Daemon) killGroup() {
	var pids []int
	if pgid := d.Pid(); pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if d.execRoot != "" {
		if b, err := os.ReadFile(filepath.Join(d.execRoot, "containerd", "containerd.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				pids = append(pids, pid)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) && alive(pid) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	// dockerd trusts the pid file with kill(pid, 0), which a zombie not yet
	// reaped still passes.
	if d.execRoot != "" {
		_ = os.Remove(filepath.Join(d.execRoot, "containerd", "containerd.pid"))
	}
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// cleanup removes what a dead dockerd leaves behind that would stop the
// next one from starting.
func (d *Daemon) cleanup() {
	if d.execRoot != "" {
		_ = syscall.Unmount(filepath.Join(d.execRoot, "netns", "default"), syscall.MNT_DETACH)
	}
}

// Pid returns the current dockerd's process id.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Starts returns how many times dockerd was started.
func (d *Daemon) Starts() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.starts
}

// Socket returns the daemon's unix socket path.
func (d *Daemon) Socket() string { return d.socket }

// Stop sends SIGTERM, waits up to grace, then SIGKILL; it stops the
// restart loop first.
func (d *Daemon) Stop(ctx context.Context, grace time.Duration) error {
	d.mu.Lock()
	d.stopping = true
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	var err error
	select {
	case <-exited:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		err = fmt.Errorf("stop %s: %w", d.name, ctx.Err())
	case <-t.C:
		_ = cmd.Process.Kill()
		<-exited
		err = fmt.Errorf("stop %s: did not exit within %s; killed", d.name, grace)
	}
	d.cleanup()
	_ = d.Client.Close()
	return err
}

// tail returns the last lines of a log file for an error message.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - 600
	if off < 0 {
		off = 0
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return strings.TrimSpace(string(b))
}
