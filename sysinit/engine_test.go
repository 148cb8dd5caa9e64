package sysinit

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/internal/imagestore"
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

// TestOSImagesFromTheStore: with overlay2, System Docker starts with the
// OS images seeded into its data root (no `docker load`), runs them, and
// can still `docker save` them (it rebuilds the layer from the seeded
// files and the tar-split record). On a data root in RAM the layer's files
// stay in the store (a symlink), on disk they are copied. With another
// storage driver the same store is loaded as an archive.
func TestOSImagesFromTheStore(t *testing.T) {
	needEngine(t)
	imgs := testImages(t)
	st, err := imagestore.Open(filepath.Join(imgs, imagestore.DirName))
	if err != nil {
		t.Fatalf("the test images have no store: %v", err)
	}
	base := sysimages.Ref(sysimages.Base, testVersion)
	for _, tc := range []struct {
		name, driver string
		tmpfs        bool
	}{{"overlay2 on disk", "overlay2", false}, {"overlay2 on tmpfs", "overlay2", true}, {"vfs", "vfs", false}} {
		driver := tc.driver
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			if tc.tmpfs {
				if err := os.MkdirAll(e.engine.DataRoot, 0o711); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mount("tmpfs", e.engine.DataRoot, "tmpfs", 0, "mode=0711"); err != nil {
					t.Fatalf("mount a tmpfs data root: %v", err)
				}
				t.Cleanup(func() { _ = syscall.Unmount(e.engine.DataRoot, syscall.MNT_DETACH) })
			}
			root := filepath.Join(e.dir, "root")
			cfg := testConfig(t, e, root)
			delete(cfg.Rancher.Services, "docker")
			cfg.Rancher.SystemDocker.StorageDriver = driver
			ctx := context.Background()
			eng, err := StartSystem(ctx, cfg, e.engineOptions(t, root, imgs)...)
			if err != nil {
				t.Fatalf("StartSystem: %v", err)
			}
			t.Cleanup(func() { _ = eng.Shutdown(context.Background()) })
			if _, err := eng.System.Client.ImageInspect(ctx, base); err != nil {
				t.Fatalf("%s is not on System Docker: %v", base, err)
			}
			layer := st.Manifest.Layers[0]
			layerDir := filepath.Join(e.engine.DataRoot, "overlay2", strings.TrimPrefix(layer.ChainID, "sha256:"))
			_, statErr := os.Stat(layerDir)
			_, stampErr := os.Stat(filepath.Join(e.engine.DataRoot, imageStampName))
			if seeded := statErr == nil && stampErr != nil; seeded != (driver == "overlay2") {
				t.Errorf("images seeded = %v (layer dir: %v, load stamp: %v), want %v", seeded, statErr, stampErr, driver == "overlay2")
			}
			if err := eng.StartServices(ctx, cfg); err != nil || eng.StartErr != nil {
				t.Fatalf("StartServices: %v, %v", err, eng.StartErr)
			}
			if got := strings.Join(eng.Started.Started, ","); got != "long,setup" {
				t.Errorf("services started = %s, want long,setup", got)
			}
			if driver != "overlay2" {
				return
			}
			if fi, err := os.Lstat(filepath.Join(layerDir, "diff")); err != nil || (fi.Mode()&os.ModeSymlink != 0) != tc.tmpfs {
				t.Errorf("the layer's diff: %v, %v; want a symlink into the store only on tmpfs", fi, err)
			}
			res, err := eng.System.Client.ImageSave(ctx, []string{base})
			if err != nil {
				t.Fatalf("ImageSave: %v", err)
			}
			defer res.Close()
			found := false
			tr := tar.NewReader(res)
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("read the saved image: %v", err)
				}
				if strings.HasSuffix(h.Name, "layer.tar") || strings.HasPrefix(h.Name, "blobs/") {
					sum := sha256.New()
					if _, err := io.Copy(sum, tr); err != nil {
						t.Fatal(err)
					}
					found = found || fmt.Sprintf("sha256:%x", sum.Sum(nil)) == layer.DiffID
				}
			}
			if !found {
				t.Errorf("`docker save %s` has no layer with digest %s", base, layer.DiffID)
			}
		})
	}
}
