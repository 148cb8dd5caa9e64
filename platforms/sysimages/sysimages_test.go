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
	"github.com/google/go-containerregistry/pkg/name"
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
	// A `docker save` tarball: manifest.json naming the tag.
	raw, manifest := readManifest(t, imgs[0].Path)
	if len(manifest) != 1 || !cmp.Equal(manifest[0].RepoTags, []string{"berth/base:1.2.3_dirty"}) {
		t.Fatalf("manifest = %+v", manifest)
	}
	tag, err := name.NewTag(imgs[0].Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(imgs[0].Path, &tag)
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

// TestBuildShares checks that all three images are in one tarball and
// share one layer, stored once: System Docker unpacks every layer of a
// load in a re-executed dockerd (1.5-2 s each under TCG), so the first
// boot waits for one unpack, not three.
func TestBuildShares(t *testing.T) {
	needBusybox(t)
	if _, err := os.Stat("/usr/sbin/dropbear"); err != nil {
		t.Skip("needs /usr/sbin/dropbear for the console image (apt-get install dropbear-bin)")
	}
	dir := t.TempDir()
	imgs, err := Build(context.Background(), dir, WithRos("/bin/busybox"), WithVersion("v1"),
		WithFiles(Console, File{Path: "/etc/motd", Data: []byte("hi\n")}))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(imgs) != 3 {
		t.Fatalf("Build = %+v, want 3 images", imgs)
	}
	_, manifest := readManifest(t, filepath.Join(dir, TarballName))
	layers := map[string][]string{}
	files := map[string]bool{}
	for _, m := range manifest {
		layers[m.RepoTags[0]] = m.Layers
		for _, l := range m.Layers {
			files[l] = true
		}
	}
	base, console, docker := layers["berth/base:v1"], layers["berth/console:v1"], layers["berth/docker:v1"]
	if len(base) != 1 || len(console) != 2 || len(docker) != 1 {
		t.Fatalf("layers: base %v, console %v, docker %v; want 1, 2 (WithFiles), 1", base, console, docker)
	}
	if console[0] != base[0] || docker[0] != base[0] {
		t.Errorf("console and docker do not share base's layer: %v %v %v", base, console, docker)
	}
	if len(files) != 2 {
		t.Errorf("%d layer files in the tarball, want 2 (the shared one once, console's extra): %v", len(files), files)
	}
}

func TestBuildNeedsRos(t *testing.T) {
	if _, err := Build(context.Background(), t.TempDir()); err == nil {
		t.Error("Build without WithRos = nil error")
	}
}

// manifestEntry is one image of a `docker save` tarball's manifest.json.
type manifestEntry struct {
	RepoTags []string
	Layers   []string
}

// readManifest reads a `docker save` tarball and its manifest.json.
func readManifest(t *testing.T, path string) ([]byte, []manifestEntry) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m []manifestEntry
	if err := json.Unmarshal(readTarFile(t, raw, "manifest.json"), &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	return raw, m
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
