package sysinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// BootScripts are the scripts RancherOS ran at the end of every boot, in
// this order: /opt/rancher/bin/start.sh (under /opt, which the state disk
// keeps) and /etc/rc.local. Each runs when it exists and is executable.
func BootScripts() []string {
	return []string{"/opt/rancher/bin/start.sh", "/etc/rc.local"}
}

// BootScriptsLog is where the boot scripts' output goes.
const BootScriptsLog = "/var/log/boot-scripts.log"

// RunBootScripts runs scripts (paths on the machine, joined onto root)
// one after the other, with their output appended to logPath, and logs
// how each ended. A script with no #! line runs with sh, as a shell would
// run it. A failing script does not stop the next; the error returned
// joins them all.
func RunBootScripts(ctx context.Context, log *slog.Logger, root, logPath string, scripts []string) error {
	out, err := os.OpenFile(filepath.Join(root, logPath), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("boot scripts: %w", err)
	}
	defer out.Close()
	var errs []error
	for _, s := range scripts {
		path := filepath.Join(root, s)
		st, err := os.Stat(path)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(out, "--- %s (%s)\n", s, t0.UTC().Format(time.RFC3339))
		err = runScriptFile(ctx, path, out)
		took := time.Since(t0).Round(time.Millisecond)
		if err != nil {
			log.Warn("boot script failed", "script", s, "took", took, "err", err, "output", logPath)
			errs = append(errs, fmt.Errorf("boot script %s: %w", s, err))
			continue
		}
		log.Info("boot script done", "script", s, "took", took, "output", logPath)
	}
	return errors.Join(errs...)
}

// runScriptFile runs path, or `sh path` when the kernel cannot exec it (no
// #! line).
func runScriptFile(ctx context.Context, path string, out *os.File) error {
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = "/"
		cmd.Stdout, cmd.Stderr = out, out
		return cmd.Run()
	}
	err := run(path)
	if errors.Is(err, syscall.ENOEXEC) {
		err = run("sh", path)
	}
	return err
}
