package sysinit

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunBootScripts(t *testing.T) {
	root := t.TempDir()
	order := filepath.Join(root, "order")
	write := func(p, content string, mode os.FileMode) {
		t.Helper()
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("var/log/.keep", "", 0o644)
	write("opt/rancher/bin/start.sh", "#!/bin/sh\necho start.sh >> "+order+"\necho to the log\nexit 3\n", 0o755)
	// No #! line, as RancherOS's test_26 wrote rc.local: runs with sh.
	write("etc/rc.local", "echo rc.local >> "+order+"\n", 0o755)
	write("opt/not-executable", "#!/bin/sh\necho ran >> "+order+"\n", 0o644)
	scripts := append(BootScripts(), "/opt/not-executable", "/opt/missing")
	err := RunBootScripts(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), root, BootScriptsLog, scripts)
	if err == nil || !strings.Contains(err.Error(), "boot script /opt/rancher/bin/start.sh: exit status 3") {
		t.Errorf("RunBootScripts() error = %v, want start.sh's exit status 3", err)
	}
	got, _ := os.ReadFile(order)
	if string(got) != "start.sh\nrc.local\n" {
		t.Errorf("scripts ran %q, want start.sh then rc.local (after start.sh failed), and not the non-executable one", got)
	}
	log, _ := os.ReadFile(filepath.Join(root, BootScriptsLog))
	if !strings.Contains(string(log), "--- /opt/rancher/bin/start.sh (") || !strings.Contains(string(log), "to the log\n") {
		t.Errorf("%s = %q, want each script's header and output", BootScriptsLog, log)
	}
}
