package sysinit

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RespawnLines reads a respawn.conf: one shell command per line; blank
// lines and lines starting with # are skipped.
func RespawnLines(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out, sc.Err()
}

// Respawn runs each command with `sh -c` and starts it again whenever it
// exits, with the same crash-loop backoff as the services (capped at
// limit), until ctx ends; then it sends SIGTERM to every command's process
// group and waits for them. It is RancherOS's `respawn`, used inside
// service containers (e.g. getty and sshd in a console).
func Respawn(ctx context.Context, commands []string, limit time.Duration, log *slog.Logger) {
	var wg sync.WaitGroup
	for _, c := range commands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := newBackoff(100*time.Millisecond, limit, 10*time.Second)
			for ctx.Err() == nil {
				cmd := exec.Command("/bin/sh", "-c", c)
				cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				start := time.Now()
				if err := cmd.Start(); err != nil {
					log.Error("respawn: start", "cmd", c, "err", err)
				} else {
					done := make(chan struct{})
					go func() {
						select {
						case <-ctx.Done():
							_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
						case <-done:
						}
					}()
					err := cmd.Wait()
					close(done)
					if ctx.Err() != nil {
						return
					}
					log.Warn("respawn: exited", "cmd", c, "err", err)
				}
				d := b.next(time.Since(start))
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}()
	}
	wg.Wait()
}
