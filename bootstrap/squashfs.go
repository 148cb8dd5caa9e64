package bootstrap

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// Prefetch reads each path once, the files under a directory included,
// and returns how many files and bytes it read. Reading a file of a
// compressed image puts its decompressed pages in the page cache, so a
// later exec or open of it does not wait for the decompression. Paths that
// cannot be read are skipped: prefetching is only ever an optimisation.
func Prefetch(paths ...string) (files int, n int64) {
	walkFiles(paths, func(p string) {
		if k, ok := readAll(p); ok {
			files++
			n += k
		}
	})
	return files, n
}

// PrefetchSize is how many bytes Prefetch(paths...) would read.
func PrefetchSize(paths ...string) int64 {
	var n int64
	walkFiles(paths, func(p string) {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	})
	return n
}

// walkFiles calls fn for each regular file of paths, the files under a
// directory included, skipping what does not exist. Symlinks are not
// followed.
func walkFiles(paths []string, fn func(string)) {
	for _, p := range paths {
		_ = filepath.WalkDir(p, func(q string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				fn(q)
			}
			return nil // what cannot be read is skipped
		})
	}
}

func readAll(p string) (int64, bool) {
	f, err := os.Open(p)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	n, _ := io.Copy(io.Discard, f)
	return n, true
}

// MemAvailable is /proc/meminfo's MemAvailable, in bytes: what the kernel
// can give without swapping.
func MemAvailable() (int64, error) {
	return meminfoField("MemAvailable:")
}

// MemTotal is /proc/meminfo's MemTotal, in bytes.
func MemTotal() (int64, error) {
	return meminfoField("MemTotal:")
}

// meminfoField is the /proc/meminfo line named field, in bytes.
func meminfoField(field string) (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read meminfo: %w", err)
	}
	defer f.Close()
	return parseMeminfo(f, field)
}

func parseMeminfo(r io.Reader, field string) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == field {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read meminfo: %s %w", field, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read meminfo: %w", err)
	}
	return 0, fmt.Errorf("read meminfo: no %s line", field)
}
