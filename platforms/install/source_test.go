package install

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	src, err := FindSources(filepath.Join(dir, "empty-root"), out, filepath.Join(dir, "no-sr0"), iso)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{src.Kernel: "kernel", src.Initrd: "initrd with system image"} {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if src.SystemImage != "" {
		t.Errorf("an ISO whose initrd holds the system image gave a system image %s", src.SystemImage)
	}
	// An installed root's own /boot wins over the ISO.
	src2, err := FindSources(filepath.Join(dir, "tree"), out, iso)
	if err != nil || src2.Kernel != filepath.Join(dir, "tree", "boot", "vmlinuz") {
		t.Errorf("FindSources(root with /boot) = %+v, %v", src2, err)
	}
	if _, err := FindSources(filepath.Join(dir, "empty-root"), out, filepath.Join(dir, "no-sr0")); err == nil {
		t.Error("FindSources with nothing to find: no error")
	}
}

func TestFindSourcesStatePartition(t *testing.T) {
	root := t.TempDir()
	boot := filepath.Join(root, "mnt/state/boot")
	os.MkdirAll(boot, 0o755)
	os.WriteFile(filepath.Join(boot, "vmlinuz"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(boot, "initrd"), []byte("i"), 0o644)
	os.MkdirAll(filepath.Join(boot, "berth"), 0o755)
	os.WriteFile(filepath.Join(boot, "berth", "system.sqfs"), []byte("s"), 0o644)
	src, err := FindSources(root, t.TempDir())
	want := Sources{Kernel: filepath.Join(boot, "vmlinuz"), Initrd: filepath.Join(boot, "initrd"), SystemImage: filepath.Join(boot, "berth", "system.sqfs")}
	if err != nil || src != want {
		t.Errorf("FindSources on an installed system = %+v, %v; want the state partition's /boot and its system image", src, err)
	}
}

// TestFromISOWithSystemImage: berth.iso boots with the small initrd and
// carries the system image beside it; FromISO gives the installer both,
// which it puts side by side in the state partition's /boot.
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
	src, err := FromISO(iso, t.TempDir())
	if err != nil {
		t.Fatalf("FromISO: %v", err)
	}
	for path, want := range map[string][]byte{src.Kernel: []byte("kernel"), src.Initrd: []byte("small"), src.SystemImage: image} {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: %d bytes, %v; want %d", path, len(got), err, len(want))
		}
	}
}

// TestFromISOTruncated: an ISO cut short is an error naming the ISO, not
// an install of half a kernel.
func TestFromISOTruncated(t *testing.T) {
	iso := filepath.Join(t.TempDir(), "berth.iso")
	os.WriteFile(iso, bytes.Repeat([]byte{0}, 40000), 0o644)
	if _, err := FromISO(iso, t.TempDir()); err == nil || !strings.Contains(err.Error(), iso) {
		t.Errorf("FromISO(truncated) = %v, want an error naming %s", err, iso)
	}
}
