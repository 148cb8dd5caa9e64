package bootstrap

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// SystemImage is where the initramfs carries the system squashfs (the
// engines, their libraries and the system image tarballs); it is mounted
// read-only at /usr.
const SystemImage = "/berth/system.sqfs"

// AttachLoop binds file to a free loop device and returns its path.
func AttachLoop(file string, readOnly bool) (string, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w", file, err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return "", fmt.Errorf("losetup %s: get free: %w", file, err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	back, err := os.OpenFile(file, flag, 0)
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w", file, err)
	}
	defer back.Close()
	loop, err := os.OpenFile(dev, flag, 0)
	if err != nil {
		return "", fmt.Errorf("losetup %s: %w", file, err)
	}
	defer loop.Close()
	cfg := unix.LoopConfig{Fd: uint32(back.Fd())}
	if readOnly {
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY
	}
	if err := unix.IoctlLoopConfigure(int(loop.Fd()), &cfg); err != nil {
		return "", fmt.Errorf("losetup %s %s: %w", dev, file, err)
	}
	return dev, nil
}

// MountSystemImage mounts the squashfs on the loop device dev read-only
// on target.
func MountSystemImage(dev, target string) error {
	m := Mount{Source: dev, Target: target, FSType: "squashfs", Flags: unix.MS_RDONLY | unix.MS_NODEV}
	return m.Apply()
}

// Prefetch reads each path once, a directory's regular files included,
// and returns how many files and bytes it read. Reading a file of a
// compressed image puts its decompressed pages in the page cache, so a
// later exec or open of it does not wait for the decompression. Paths that
// cannot be read are skipped: prefetching is only ever an optimisation.
func Prefetch(paths ...string) (files int, n int64) {
	buf := make([]byte, 1<<20)
	read := func(p string) {
		f, err := os.Open(p)
		if err != nil {
			return
		}
		defer f.Close()
		for {
			k, err := f.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		files++
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		switch {
		case err != nil:
		case st.IsDir():
			ents, _ := os.ReadDir(p)
			for _, e := range ents {
				if e.Type().IsRegular() {
					read(filepath.Join(p, e.Name()))
				}
			}
		case st.Mode().IsRegular():
			read(p)
		}
	}
	return files, n
}
