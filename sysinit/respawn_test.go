package sysinit

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRespawnLines(t *testing.T) {
	got, err := RespawnLines(strings.NewReader("# comment\n\n/sbin/getty 115200 tty1\n  dropbear -F  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/sbin/getty 115200 tty1", "dropbear -F"}, got); diff != "" {
		t.Errorf("RespawnLines (-want +got):\n%s", diff)
	}
}

func TestRespawnRestartsAndStops(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		Respawn(ctx, []string{"echo run >> " + log, "sleep 60"}, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Respawn did not return within 3.5 s of its context ending (sleep 60 not stopped?)")
	}
	b, _ := os.ReadFile(log)
	// Delays 0, 0.1, 0.2, 0.4, 0.8: about 5 runs in 1.5 s.
	if n := strings.Count(string(b), "run"); n < 3 || n > 8 {
		t.Errorf("a command exiting at once ran %d times in 1.5 s, want 3..8 (restarted with backoff)", n)
	}
}
