package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The header MakeSwap writes is one util-linux's blkid reads as a swap
// area, with its label and UUID; IsSwap tells it (and mkswap's) from a
// blank device.
func TestMakeSwap(t *testing.T) {
	blkid, err := exec.LookPath("blkid")
	if err != nil {
		t.Skip("blkid not installed (apt-get install util-linux)")
	}
	p := filepath.Join(t.TempDir(), "swap")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if IsSwap(f) {
		t.Fatal("a blank file is taken for a swap area")
	}
	uuid, err := MakeSwap(f, size, "berth-zram")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(blkid, "-p", "-o", "export", p).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid: %v: %s", err, out)
	}
	want := fmt.Sprintf("%x-%x-%x-%x-%x", uuid[0:4], uuid[4:6], uuid[6:8], uuid[8:10], uuid[10:])
	for _, line := range []string{"TYPE=swap", "LABEL=berth-zram", "UUID=" + want, "VERSION=1"} {
		if !strings.Contains(string(out), line+"\n") {
			t.Errorf("blkid does not say %s:\n%s", line, out)
		}
	}
	if !IsSwap(f) {
		t.Error("IsSwap does not see the area MakeSwap wrote")
	}
	if id, ok := ReadSwapIdentity(f); !ok || id.Label != "berth-zram" || id.UUID != want {
		t.Errorf("ReadSwapIdentity = %+v, %v; want berth-zram, %s", id, ok, want)
	}
	if _, err := MakeSwap(f, 4096, ""); err == nil {
		t.Error("MakeSwap of one page: no error")
	}
	if mkswap, err := exec.LookPath("mkswap"); err == nil {
		q := filepath.Join(t.TempDir(), "swap2")
		if err := os.WriteFile(q, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(mkswap, q).CombinedOutput(); err != nil {
			t.Fatalf("mkswap: %v: %s", err, out)
		}
		g, err := os.Open(q)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if !IsSwap(g) {
			t.Error("IsSwap does not see mkswap's area")
		}
	}
}

// mount(8) options become mount(2) flags, the filesystem's own options
// its data, and what only fstab knows is dropped.
func TestMountOptions(t *testing.T) {
	tests := []struct {
		in    string
		flags uintptr
		data  string
	}{
		{"", 0, ""},
		{"defaults", 0, ""},
		{"defaults,noatime,nofail", unix.MS_NOATIME, ""},
		{"ro,nosuid,nodev,noexec", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"ro,rw", 0, ""},
		{"noatime,data=ordered,x-systemd.device-timeout=5,discard", unix.MS_NOATIME, "data=ordered,discard"},
		{"rbind", unix.MS_BIND | unix.MS_REC, ""},
	}
	for _, tt := range tests {
		flags, data := MountOptions(tt.in)
		if flags != tt.flags || data != tt.data {
			t.Errorf("MountOptions(%q) = %#x, %q; want %#x, %q", tt.in, flags, data, tt.flags, tt.data)
		}
	}
}

// A mount with options lands with them; one with no type tries each given
// type until one mounts.
func TestMountDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount needs root")
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	got, err := MountDevice("tmpfs", dir, "", "noexec,size=1m", []string{"berthnofs", "tmpfs"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, 0) })
	if got != "tmpfs" {
		t.Errorf("mounted as %q, want tmpfs", got)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var line string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			line = l
		}
	}
	if !strings.Contains(line, "noexec") || !strings.Contains(line, "size=1024k") {
		t.Errorf("mountinfo of %s: %q; want noexec and size=1024k", dir, line)
	}
	if _, err := MountDevice("tmpfs", filepath.Join(t.TempDir(), "c"), "berthnofs", "", nil); err == nil || !strings.Contains(err.Error(), "berthnofs") {
		t.Errorf("mount as an unknown type: %v; want an error naming it", err)
	}
}

// A bind mount of a file (RancherOS's test_23 binds a write_files file
// into /home/rancher) makes its target a file; `ro` holds through the
// remount; a directory binds on a directory; a missing source is named.
func TestMountDeviceBind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount needs root")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "test")
	if err := os.WriteFile(src, []byte("test"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "home", "rancher", "test")
	got, err := MountDevice(src, file, "", "bind,ro", []string{"ext4"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(file, 0) })
	if got != "bind" {
		t.Errorf("mounted as %q, want bind", got)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "test" {
		t.Errorf("read %s: %q, %v; want the source's content", file, b, err)
	}
	if err := os.WriteFile(file, []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through the ro bind: %v; want EROFS", err)
	}
	sub := filepath.Join(dir, "d")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "mnt", "d")
	if _, err := MountDevice(sub, target, "auto", "bind", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(target, 0) })
	if err := os.WriteFile(filepath.Join(target, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sub, "x")); err != nil {
		t.Errorf("a file written through the directory bind is not in its source: %v", err)
	}
	if _, err := MountDevice(filepath.Join(dir, "missing"), filepath.Join(dir, "m"), "", "bind", nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("bind of a missing source: %v; want an error naming it", err)
	}
}
