package sysinit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ownContainerd is a containerd PID 1 runs for a dockerd, which is
// given --containerd=SOCKET instead of starting its own.
//
// dockerd 20.10 starts its containerd only once its own start-up is done
// (1.5-2.5 s under TCG), then dials it with a one-second backoff until it
// answers (another 1.3 s): three seconds in series on the way to System
// Docker's /_ping. Started by PID 1, containerd comes up while dockerd
// does. (dockerd can adopt a running containerd through its pid file, but
// it removes the socket first, so the adopted one is never reached.) PID
// 1 keeps it running: a containerd that dies is started again, and dockerd
// reconnects to it; the containers run on in their shims. It is stopped
// after dockerd.
type ownContainerd struct {
	bin      string // the containerd binary, as dockerd finds it on PATH
	dataRoot string
	execRoot string
	debug    bool
}

// newOwnContainerd is the containerd of a dockerd with these roots, or
// nil when dockerd is told to use another (--containerd) or there is no
// containerd binary to start.
func newOwnContainerd(dataRoot, execRoot, containerd string, debug bool, args []string) *ownContainerd {
	if containerd != "" || dataRoot == "" || execRoot == "" {
		return nil
	}
	for _, a := range args {
		if a == "--containerd" || strings.HasPrefix(a, "--containerd=") {
			return nil
		}
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil
	}
	return &ownContainerd{bin: bin, dataRoot: dataRoot, execRoot: execRoot, debug: debug}
}

// Socket is the containerd's gRPC socket, where dockerd would
// have put its own.
func (c *ownContainerd) Socket() string { return filepath.Join(c.dir(), "containerd.sock") }

func (c *ownContainerd) dir() string { return filepath.Join(c.execRoot, "containerd") }

func (c *ownContainerd) level() string {
	if c.debug {
		return "debug"
	}
	return "info"
}

// config is the containerd.toml dockerd 20.10 writes for these roots.
func (c *ownContainerd) config() string {
	return fmt.Sprintf(`version = 0
root = %q
state = %q
disabled_plugins = ["cri"]
oom_score = 0

[grpc]
  address = %q
  max_recv_message_size = 16777216
  max_send_message_size = 16777216

[debug]
  address = %q
  level = %q

[plugins]
  [plugins.linux]
    shim = "containerd-shim"
    runtime = "runc"
    runtime_root = %q
`, filepath.Join(c.dataRoot, "containerd", "daemon"), filepath.Join(c.dir(), "daemon"),
		c.Socket(), filepath.Join(c.dir(), "containerd-debug.sock"),
		c.level(), filepath.Join(c.dataRoot, "runc"))
}

// start starts containerd with its output on logf. The channel is closed
// when it exits.
func (c *ownContainerd) start(logf *os.File, pdeathsig bool) (*exec.Cmd, chan struct{}, error) {
	if err := os.MkdirAll(c.dir(), 0o700); err != nil {
		return nil, nil, fmt.Errorf("start containerd: %w", err)
	}
	conf := filepath.Join(c.dir(), "containerd.toml")
	if err := os.WriteFile(conf, []byte(c.config()), 0o600); err != nil {
		return nil, nil, fmt.Errorf("start containerd: %w", err)
	}
	_ = os.Remove(c.Socket()) // a dead one's
	cmd := exec.Command(c.bin, "--config", conf, "--log-level", c.level())
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, like dockerd's: stopped in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if pdeathsig {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	return cmd, exited, nil
}

// stopProcess sends SIGTERM to cmd, waits up to grace for exited, then
// kills it.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
	}
}
