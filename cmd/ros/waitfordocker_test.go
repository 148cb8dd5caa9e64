package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWaitForDocker(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var/run"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Nothing listens: it gives up after --timeout, naming the socket.
	start := time.Now()
	_, stderr, code := ros(t, "", "--root", root, "wait-for-docker", "--timeout", "300ms")
	if code != 1 || !strings.Contains(stderr, "User Docker did not answer on /var/run/docker.sock within 300ms") {
		t.Errorf("wait-for-docker with no engine: exit %d, %q; want 1 and the socket named", code, stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("wait-for-docker --timeout 300ms took %v", took)
	}
	// An engine that starts answering later: it waits for it.
	sock := filepath.Join(root, "var/run/docker.sock")
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { l.Close() })
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Api-Version", "1.41")
			_, _ = w.Write([]byte("OK"))
		}))
	}()
	if _, stderr, code := ros(t, "", "--root", root, "wait-for-docker", "--timeout", "20s"); code != 0 {
		t.Errorf("wait-for-docker with an engine coming up: exit %d, %q; want 0", code, stderr)
	}
}
