package install

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"
)

func TestFromISO(t *testing.T) {
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skipf("xorriso not installed: %v", err)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree", "boot")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(tree, "initrd"), []byte("initrd with system image"), 0o644)
	iso := filepath.Join(dir, "berth.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-o", iso, filepath.Join(dir, "tree")).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	out := t.TempDir()
	k, i, err := FindSources(filepath.Join(dir, "empty-root"), out, filepath.Join(dir, "no-sr0"), iso)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{k: "kernel", i: "initrd with system image"} {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	// An installed root's own /boot wins over the ISO.
	k2, _, err := FindSources(filepath.Join(dir, "tree"), out, iso)
	if err != nil || k2 != filepath.Join(dir, "tree", "boot", "vmlinuz") {
		t.Errorf("FindSources(root with /boot) = %s, %v", k2, err)
	}
	if _, _, err := FindSources(filepath.Join(dir, "empty-root"), out, filepath.Join(dir, "no-sr0")); err == nil {
		t.Error("FindSources with nothing to find: no error")
	}
}

func TestFindSourcesStatePartition(t *testing.T) {
	root := t.TempDir()
	boot := filepath.Join(root, "mnt/state/boot")
	os.MkdirAll(boot, 0o755)
	os.WriteFile(filepath.Join(boot, "vmlinuz"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(boot, "initrd"), []byte("i"), 0o644)
	k, i, err := FindSources(root, t.TempDir())
	if err != nil || k != filepath.Join(boot, "vmlinuz") || i != filepath.Join(boot, "initrd") {
		t.Errorf("FindSources on an installed system = %s, %s, %v; want the state partition's /boot", k, i, err)
	}
}

// TestFromISOWithSystemImage: berth.iso boots with the small initrd and
// carries the system image beside it; what FromISO gives the installer is
// the initrd a disk boots, the small one followed by a cpio holding the
// image (4-byte aligned, as the kernel needs).
func TestFromISOWithSystemImage(t *testing.T) {
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skipf("xorriso not installed: %v", err)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
	os.MkdirAll(filepath.Join(tree, "berth"), 0o755)
	os.WriteFile(filepath.Join(tree, "boot", "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(tree, "boot", "initrd"), []byte("small"), 0o644)
	image := bytes.Repeat([]byte("squashfs"), 1000)
	os.WriteFile(filepath.Join(tree, "berth", "system.sqfs"), image, 0o644)
	iso := filepath.Join(dir, "berth.iso")
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-o", iso, tree).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	_, initrd, err := FromISO(iso, t.TempDir())
	if err != nil {
		t.Fatalf("FromISO: %v", err)
	}
	b, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("small\x00\x00\x00")) {
		t.Fatalf("initrd starts %q, want the small initrd padded to 8 bytes", b[:min(len(b), 16)])
	}
	r := cpio.NewReader(bytes.NewReader(b[8:]))
	got := map[string][]byte{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the appended cpio: %v", err)
		}
		body, _ := io.ReadAll(r)
		got[h.Name] = body
	}
	if _, ok := got["berth"]; !ok || !bytes.Equal(got["berth/system.sqfs"], image) {
		t.Errorf("the appended cpio has %d entries, berth/system.sqfs %d bytes; want the berth dir and the %d-byte image", len(got), len(got["berth/system.sqfs"]), len(image))
	}
}
