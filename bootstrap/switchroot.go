package bootstrap

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RootMarker exists in the tmpfs root, so PID 1 knows it has switched.
const RootMarker = "/.berth-root"

// NeedSwitchRoot says whether / is still the initramfs (rootfs), from
// which runc cannot pivot_root.
func NeedSwitchRoot() bool {
	_, err := os.Lstat(RootMarker)
	return os.Getpid() == 1 && err != nil
}

// SwitchRoot moves the initramfs contents into a fresh tmpfs and makes it
// the root, as switch_root(8) does: each file is copied then removed, so
// the memory in use grows by one file at a time, not by the whole image.
// Files in keep are neither copied nor removed (the system squashfs, which
// a loop device already holds). Mounts under / (/dev) move along.
func SwitchRoot(log *Logger, keep ...string) error {
	const newRoot = "/newroot"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("switch root: mount tmpfs: %w", err)
	}
	n, bytes, err := moveTree("/", newRoot, keep)
	if err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := os.WriteFile(filepath.Join(newRoot, RootMarker), nil, 0o644); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		if IsMountPoint(m) {
			if err := unix.Mount(m, filepath.Join(newRoot, m), "", unix.MS_MOVE, ""); err != nil {
				return fmt.Errorf("switch root: move %s: %w", m, err)
			}
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: chdir: %w", err)
	}
	if err := unix.Mount(newRoot, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move mount: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: chdir /: %w", err)
	}
	log.Printf("switch_root: %d files, %d MiB moved into tmpfs", n, bytes>>20)
	return nil
}

// moveTree copies every entry under src (skipping dst and mount points of
// other filesystems) to dst, removing each source file after its copy.
func moveTree(src, dst string, keep []string) (files int, bytes int64, err error) {
	var rootDev uint64
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return 0, 0, err
	}
	rootDev = st.Dev
	var dirs []string
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == src {
			return nil
		}
		if p == dst {
			return filepath.SkipDir
		}
		for _, k := range keep {
			if p == k {
				return nil
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Dev != rootDev {
			// A mount point: its mount moves, it needs a directory.
			if rel, err := filepath.Rel(src, p); err == nil {
				_ = os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			return filepath.SkipDir
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		mode := fs.FileMode(st.Mode & 0o7777)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := os.Mkdir(target, 0o755); err != nil && !os.IsExist(err) {
				return err
			}
			if err := unix.Chmod(target, st.Mode&0o7777); err != nil {
				return err
			}
			dirs = append(dirs, p)
			return nil
		case unix.S_IFLNK:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(l, target); err != nil {
				return err
			}
		case unix.S_IFREG:
			n, err := copyFile(p, target, mode)
			if err != nil {
				return err
			}
			bytes += n
		default:
			if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
				return err
			}
		}
		files++
		return os.Remove(p)
	})
	// Emptied directories of the old root are removed deepest first;
	// mount points (not empty, other filesystems) stay.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i])
	}
	return files, bytes, err
}

func copyFile(src, dst string, mode fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, mode)
	}
	return n, err
}
