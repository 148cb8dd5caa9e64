package main

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestModprobe resolves what the kernel and udev ask for against a module
// tree under --root. The module files are not real modules, so the load
// itself fails, with the resolved file's path in the error: that is what
// shows which module (and dependency) the name resolved to.
func TestModprobe(t *testing.T) {
	root := t.TempDir()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "lib/modules", unix.ByteSliceToString(uts.Release[:]))
	writeFile(t, filepath.Join(dir, "modules.dep"), "kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\nkernel/fs/fat/fat.ko:\n")
	writeFile(t, filepath.Join(dir, "modules.alias"), "alias fs-vfat vfat\n")
	writeFile(t, filepath.Join(dir, "kernel/fs/fat/fat.ko"), "not a module")
	writeFile(t, filepath.Join(dir, "kernel/fs/fat/vfat.ko"), "not a module")

	_, stderr, code := ros(t, "", "--root", root, "modprobe", "-q", "--", "fs-vfat")
	if code != 1 || !strings.Contains(stderr, "kernel/fs/fat/fat.ko") {
		t.Errorf("modprobe fs-vfat: exit %d, stderr %q; want a failed load of the dependency fat.ko first", code, stderr)
	}
	_, stderr, code = ros(t, "", "--root", root, "modprobe", "-q", "--", "net-pf-99")
	if code != 1 || !strings.Contains(stderr, "module net-pf-99 not found") {
		t.Errorf("modprobe net-pf-99: exit %d, stderr %q; want not found", code, stderr)
	}
	_, stderr, code = ros(t, "", "--root", root, "modprobe", "-r", "vfat")
	if code == 0 || !strings.Contains(stderr, "not supported") {
		t.Errorf("modprobe -r: exit %d, stderr %q", code, stderr)
	}
}

func TestModprobeArgs(t *testing.T) {
	names, params := modprobeArgs([]string{"bonding", "max_bonds=0", "mode=1"}, false)
	if len(names) != 1 || names[0] != "bonding" || params != "max_bonds=0 mode=1" {
		t.Errorf("modprobeArgs = %q, %q", names, params)
	}
	names, params = modprobeArgs([]string{"nf_tables", "xt_nat"}, true)
	if len(names) != 2 || params != "" {
		t.Errorf("modprobeArgs -a = %q, %q", names, params)
	}
}
