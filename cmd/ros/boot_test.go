package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootTimeline(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "var/log/boot-timeline.json"), `{"phases": [
  {"name": "modules", "start_ns": 2000000000, "duration_ns": 750000000},
  {"name": "engines", "start_ns": 2750000000, "duration_ns": 3000000000, "error": "no dockerd"},
  {"name": "ready", "start_ns": 5750000000, "duration_ns": 0}
]}`)
	svg := filepath.Join(t.TempDir(), "boot.svg")
	out, errOut, code := ros(t, "", "--root", root, "boot", "timeline", "--svg", svg)
	if code != 0 {
		t.Fatalf("ros boot timeline: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"modules  2.000  2.750  0.750", "engines  2.750  5.750  3.000     no dockerd", "ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("ros boot timeline output:\n%s\nwant a row %q", out, want)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil || !strings.Contains(string(b), "<svg") || strings.Count(string(b), "<rect") != 3 {
		t.Errorf("--svg %s: %v, %q", svg, err, b)
	}

	_, errOut, code = ros(t, "", "--root", t.TempDir(), "boot", "timeline")
	if code == 0 || !strings.Contains(errOut, "boot-timeline.json") {
		t.Errorf("ros boot timeline without a timeline: exit %d, stderr %q; want an error naming the file", code, errOut)
	}
}

func TestPowerCommandsRefuseOutsidePID1(t *testing.T) {
	_, errOut, code := ros(t, "", "init")
	if code == 0 || !strings.Contains(errOut, "not process 1") {
		t.Errorf("ros init outside PID 1: exit %d, %q; want a refusal", code, errOut)
	}
}
