package bootstrap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mountFlags are the mount(8) options that are mount(2) flags; the rest
// of an options list is the filesystem's own data.
var mountFlags = map[string]struct {
	set   bool
	flags uintptr
}{
	"ro": {true, unix.MS_RDONLY}, "rw": {false, unix.MS_RDONLY},
	"nosuid": {true, unix.MS_NOSUID}, "suid": {false, unix.MS_NOSUID},
	"nodev": {true, unix.MS_NODEV}, "dev": {false, unix.MS_NODEV},
	"noexec": {true, unix.MS_NOEXEC}, "exec": {false, unix.MS_NOEXEC},
	"sync": {true, unix.MS_SYNCHRONOUS}, "async": {false, unix.MS_SYNCHRONOUS},
	"noatime": {true, unix.MS_NOATIME}, "atime": {false, unix.MS_NOATIME},
	"nodiratime": {true, unix.MS_NODIRATIME}, "diratime": {false, unix.MS_NODIRATIME},
	"relatime": {true, unix.MS_RELATIME}, "norelatime": {false, unix.MS_RELATIME},
	"strictatime": {true, unix.MS_STRICTATIME},
	"dirsync":     {true, unix.MS_DIRSYNC},
	"bind":        {true, unix.MS_BIND}, "rbind": {true, unix.MS_BIND | unix.MS_REC},
}

// fstabOnly are options that mean something to mount(8) or the boot, not
// to the kernel.
var fstabOnly = map[string]bool{"defaults": true, "auto": true, "noauto": true, "nofail": true, "user": true, "nouser": true, "_netdev": true}

// MountOptions splits a mount(8) options list ("defaults,noatime,
// data=ordered") into mount(2) flags and the filesystem's data.
func MountOptions(opts string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range strings.Split(opts, ",") {
		o = strings.TrimSpace(o)
		if f, ok := mountFlags[o]; ok {
			if f.set {
				flags |= f.flags
			} else {
				flags &^= f.flags
			}
			continue
		}
		if o != "" && !fstabOnly[o] && !strings.HasPrefix(o, "x-") {
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// Filesystems are the block-device filesystem types the kernel knows now,
// from /proc/filesystems, for a mount whose type is not given.
func Filesystems() ([]string, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return nil, fmt.Errorf("filesystems: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) == 1 {
			out = append(out, fs[0])
		}
	}
	return out, sc.Err()
}

// MountDevice mounts dev on target with mount(8)-style options; fstype ""
// or "auto" tries each filesystem of try in turn. It returns the type that
// mounted. With `bind` (or `rbind`) in options, dev is a file or
// directory bound on target, which is made a file when dev is one, and
// the type is "bind"; `ro` then applies through a remount, as mount(8)
// does.
func MountDevice(dev, target, fstype, options string, try []string) (string, error) {
	flags, data := MountOptions(options)
	if flags&unix.MS_BIND != 0 {
		return bindMount(dev, target, flags)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("mount %s on %s: %w", dev, target, err)
	}
	types := []string{fstype}
	if fstype == "" || fstype == "auto" {
		types = try
	}
	var errs []error
	for _, t := range types {
		err := unix.Mount(dev, target, t, flags, data)
		if err == nil {
			return t, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t, err))
	}
	if len(errs) == 0 {
		return "", fmt.Errorf("mount %s on %s: no filesystem type to try", dev, target)
	}
	return "", fmt.Errorf("mount %s on %s: %w", dev, target, errors.Join(errs...))
}

func bindMount(src, target string, flags uintptr) (string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	if st.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else if err = os.MkdirAll(filepath.Dir(target), 0o755); err == nil {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_RDONLY|os.O_CREATE, 0o644); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return "", fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	if err := unix.Mount(src, target, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
		return "", fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	if rest := flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|rest, ""); err != nil {
			return "", fmt.Errorf("bind %s on %s: remount with its options: %w", src, target, err)
		}
	}
	return "bind", nil
}
