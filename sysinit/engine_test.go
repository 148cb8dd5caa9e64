package sysinit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/platforms/sysimages"
	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/client"
)

func TestSystemDockerComesBackAfterKill(t *testing.T) {
	needEngine(t)
	e := newTestEnv(t)
	d := startTestDaemon(t, e)
	ctx := context.Background()
	v, err := d.Client.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		t.Fatalf("ServerVersion: %v", err)
	}
	t.Logf("engine %s, API %s", v.Version, v.APIVersion)
	old := d.Pid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if d.Pid() != old {
			if _, err := d.Client.Ping(ctx, client.PingOptions{}); err == nil {
				if got := d.Starts(); got != 2 {
					t.Errorf("Starts() = %d, want 2", got)
				}
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("System Docker did not come back within 30s after SIGKILL (pid %d -> %d)", old, d.Pid())
}

func TestLoadOSImagesOncePerVersion(t *testing.T) {
	needEngine(t)
	imgs := testImages(t)
	e := newTestEnv(t)
	d := startTestDaemon(t, e)
	ctx := context.Background()
	stamp := filepath.Join(e.dir, "state", "images.stamp")
	refs, err := LoadOSImages(ctx, d.Client, imgs, testVersion, stamp)
	if err != nil {
		t.Fatalf("LoadOSImages: %v", err)
	}
	want := []string{sysimages.Ref(sysimages.Base, testVersion), sysimages.Ref(sysimages.Console, testVersion), sysimages.Ref(sysimages.Docker, testVersion)}
	if diff := cmp.Diff(want, refs); diff != "" {
		t.Errorf("loaded images (-want +got):\n%s", diff)
	}
	again, err := LoadOSImages(ctx, d.Client, imgs, testVersion, stamp)
	if err != nil || again != nil {
		t.Errorf("second LoadOSImages = %v, %v; want nothing loaded (stamp)", again, err)
	}
	// The loaded base image runs: busybox and ros are in it.
	s := NewServices("system-docker", d.Client, WithServicesLogger(testLogger(t)))
	spec := Spec{Name: "hello", Service: cloudinit.Service{Image: want[0], Net: "none",
		Command: []string{"sh", "-c", "test -x /usr/bin/ros && echo ok"},
		Labels:  map[string]string{cloudinit.LabelDetach: "false"}}, OneShot: true}
	if _, err := s.Reconcile(ctx, []Spec{spec}); err != nil {
		t.Fatalf("Reconcile one-shot on the loaded base image: %v", err)
	}
	// A missing image is a clear error naming it.
	bad := Spec{Name: "ghost", Service: cloudinit.Service{Image: "berth/nothere:1", Net: "none"}}
	_, err = s.Reconcile(ctx, []Spec{spec, bad})
	if err == nil || !strings.Contains(err.Error(), "berth/nothere:1 is not loaded") {
		t.Errorf("Reconcile with a missing image: err = %v, want it to name berth/nothere:1", err)
	}
	// Preload: user tarballs load once.
	pre := filepath.Join(e.dir, "preload")
	if err := os.MkdirAll(pre, 0o755); err != nil {
		t.Fatal(err)
	}
	writePreload(t, filepath.Join(pre, "mine.tar"), "preload/mine:1")
	if refs, err := LoadPreload(ctx, d.Client, pre); err != nil || len(refs) != 1 {
		t.Errorf("LoadPreload = %v, %v; want one image", refs, err)
	}
	if refs, err := LoadPreload(ctx, d.Client, pre); err != nil || len(refs) != 0 {
		t.Errorf("second LoadPreload = %v, %v; want nothing (unchanged file)", refs, err)
	}
}
