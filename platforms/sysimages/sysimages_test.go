package sysimages

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func needBusybox(t *testing.T) {
	t.Helper()
	if err := requireStatic("/bin/busybox"); err != nil {
		t.Skipf("needs a static /bin/busybox (busybox-static, see .ci/deps): %v", err)
	}
}

func TestBuildBase(t *testing.T) {
	needBusybox(t)
	dir := t.TempDir()
	// Any static binary stands in for ros.
	imgs, err := Build(context.Background(), dir, WithRos("/bin/busybox"), WithVersion("1.2.3+dirty"), WithOnly(Base))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(imgs) != 1 || imgs[0].Ref != "berth/base:1.2.3_dirty" {
		t.Fatalf("Build = %+v, want one image berth/base:1.2.3_dirty", imgs)
	}
	raw, err := os.ReadFile(imgs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	// A `docker save` tarball: manifest.json naming the tag.
	var manifest []struct {
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(readTarFile(t, raw, "manifest.json"), &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 || !cmp.Equal(manifest[0].RepoTags, []string{"berth/base:1.2.3_dirty"}) {
		t.Fatalf("manifest = %+v", manifest)
	}
	img, err := tarball.ImageFromPath(imgs[0].Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.Linkname
	}
	for name, link := range map[string]string{"bin/busybox": "", "usr/bin/ros": "", "bin/sh": "/bin/busybox", "usr/bin/netconf": "ros", "usr/bin/ntpd": "ros", "etc/passwd": "", "var/run": "/run"} {
		if l, ok := got[name]; !ok || l != link {
			t.Errorf("layer entry %s: present=%v link=%q, want link %q", name, ok, l, link)
		}
	}
	// Reproducible: the same inputs give the same bytes.
	again, err := Build(context.Background(), filepath.Join(dir, "again"), WithRos("/bin/busybox"), WithVersion("1.2.3+dirty"), WithOnly(Base))
	if err != nil {
		t.Fatal(err)
	}
	raw2, _ := os.ReadFile(again[0].Path)
	if !bytes.Equal(raw, raw2) {
		t.Error("two builds of the same inputs differ")
	}
}

func TestBuildNeedsRos(t *testing.T) {
	if _, err := Build(context.Background(), t.TempDir()); err == nil {
		t.Error("Build without WithRos = nil error")
	}
}

func readTarFile(t *testing.T, raw []byte, name string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in tarball: %v", name, err)
		}
		if h.Name == name {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}
