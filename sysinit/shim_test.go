package sysinit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The group annotation is added to a spec with or without annotations,
// the rest of the spec is kept byte for byte in meaning, and a group the
// spec already names is not replaced.
func TestGroupBundle(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	spec := `{"ociVersion":"1.0.2","process":{"args":["sh","-c","sleep 1"],"env":["A=1"]},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"}]}}`
	if err := os.WriteFile(p, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := GroupBundle(dir, "berth-system"); err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	data, _ := os.ReadFile(p)
	_ = json.Unmarshal(data, &got)
	_ = json.Unmarshal([]byte(spec), &want)
	ann, _ := got["annotations"].(map[string]any)
	if ann[shimGroupAnnotation] != "berth-system" {
		t.Errorf("annotations = %v, want %s=berth-system", got["annotations"], shimGroupAnnotation)
	}
	delete(got, "annotations")
	if gb, _ := json.Marshal(got); string(gb) != mustJSON(t, want) {
		t.Errorf("the rest of the spec changed:\n got %s\nwant %s", gb, mustJSON(t, want))
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode %v, want 0600 kept", st.Mode().Perm())
	}

	other := `{"ociVersion":"1.0.2","annotations":{"x":"y","` + shimGroupAnnotation + `":"pod"}}`
	if err := os.WriteFile(p, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := GroupBundle(dir, "berth-system"); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(p); string(data) != other {
		t.Errorf("a spec with its own group was rewritten: %s", data)
	}
	if err := os.WriteFile(p, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := GroupBundle(dir, "g"); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("GroupBundle of a broken spec: %v, want an error naming config.json", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The real shim is the next one on PATH, never the stand-in's own
// directory.
func TestRealShim(t *testing.T) {
	stand, real := t.TempDir(), t.TempDir()
	for _, d := range []string{stand, real} {
		if err := os.WriteFile(filepath.Join(d, ShimName), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := realShim(filepath.Join(stand, ShimName), stand+":"+t.TempDir()+":"+real)
	if err != nil || got != filepath.Join(real, ShimName) {
		t.Errorf("realShim = %q, %v; want %s", got, err, filepath.Join(real, ShimName))
	}
	if _, err := realShim(filepath.Join(stand, ShimName), stand); err == nil {
		t.Error("realShim with only the stand-in on PATH: no error")
	}
}

// With ros standing in for the shim, System Docker's services share one
// shim process; a killed service still comes back, in that shim.
func TestSystemServicesShareOneShim(t *testing.T) {
	needEngine(t)
	imgs := testImages(t)
	ros := filepath.Join(filepath.Dir(imgs), "ros")
	if _, err := os.Stat(ros); err != nil {
		t.Skipf("no ros binary built for the test images: %v", err)
	}
	e := newTestEnv(t)
	root := filepath.Join(e.dir, "root")
	cfg := testConfig(t, e, root)
	delete(cfg.Rancher.Services, "docker")
	second := svc("trap 'exit 0' TERM; while :; do sleep 1; done")
	second.Restart = "always"
	cfg.Rancher.Services["second"] = &second
	ctx := context.Background()
	eng, err := StartEngines(ctx, cfg, append(e.engineOptions(t, root, imgs), WithShimGroup(ros))...)
	if err != nil {
		t.Fatalf("StartEngines: %v", err)
	}
	defer eng.Shutdown(context.Background())
	sock := filepath.Join(e.engine.ExecRoot, "containerd", "containerd.sock")
	if n := shimsOf(t, sock); n != 1 {
		t.Errorf("%d shims for System Docker's services (long, second), want 1", n)
	}
	pid := containerPid(t, eng.System.Client, "second")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if took := waitRunning(t, eng.System.Client, "second", pid, 10*time.Second); took < 0 {
		t.Errorf("service second did not come back in its group's shim")
	}
	if n := shimsOf(t, sock); n != 1 {
		t.Errorf("%d shims after a service's restart, want 1", n)
	}
}

// shimsOf counts the runc shims serving the containerd at sock.
func shimsOf(t *testing.T, sock string) int {
	t.Helper()
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if filepath.Base(args[0]) == ShimName && strings.Contains(string(data), "\x00"+sock+"\x00") {
			n++
		}
	}
	return n
}
