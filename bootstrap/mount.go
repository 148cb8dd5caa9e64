package bootstrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Mount is one mount(2) call of early boot.
type Mount struct {
	Source string
	Target string
	FSType string
	Flags  uintptr
	Data   string
	// Optional mounts may fail (a filesystem the kernel lacks) without
	// failing the boot.
	Optional bool
}

// String renders the mount the way mount(8) would be called for it.
func (m Mount) String() string {
	var opts []string
	for _, f := range []struct {
		bit  uintptr
		name string
	}{{unix.MS_RDONLY, "ro"}, {unix.MS_NOSUID, "nosuid"}, {unix.MS_NODEV, "nodev"}, {unix.MS_NOEXEC, "noexec"}, {unix.MS_RELATIME, "relatime"}, {unix.MS_BIND, "bind"}, {unix.MS_REC, "rec"}} {
		if m.Flags&f.bit != 0 {
			opts = append(opts, f.name)
		}
	}
	if m.Data != "" {
		opts = append(opts, m.Data)
	}
	s := "mount"
	if m.FSType != "" {
		s += " -t " + m.FSType
	}
	if len(opts) > 0 {
		s += " -o " + strings.Join(opts, ",")
	}
	return s + " " + m.Source + " " + m.Target
}

// Apply creates the mount point and mounts. A target that already has
// this filesystem type mounted (a second run, or the kernel's own
// devtmpfs) is left as it is.
func (m Mount) Apply() error {
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return fmt.Errorf("%s: %w", m, err)
	}
	if m.Flags&(unix.MS_BIND|unix.MS_REMOUNT|unix.MS_MOVE) == 0 && IsMountPoint(m.Target) {
		return nil
	}
	if err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil
		}
		return fmt.Errorf("%s: %w", m, err)
	}
	return nil
}

const (
	nosuidNodevNoexec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// EarlyMounts is the mount table of early boot, in order.
func EarlyMounts() []Mount {
	return []Mount{
		{Source: "proc", Target: "/proc", FSType: "proc", Flags: nosuidNodevNoexec},
		{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nosuidNodevNoexec},
		{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755"},
		{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "gid=5,mode=0620,ptmxmode=0666"},
		{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777"},
		{Source: "mqueue", Target: "/dev/mqueue", FSType: "mqueue", Flags: nosuidNodevNoexec, Optional: true},
		{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0755"},
		{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Flags: nosuidNodevNoexec, Data: "nsdelegate"},
		{Source: "debugfs", Target: "/sys/kernel/debug", FSType: "debugfs", Flags: nosuidNodevNoexec, Optional: true},
		{Source: "bpf", Target: "/sys/fs/bpf", FSType: "bpf", Flags: nosuidNodevNoexec, Optional: true},
	}
}

// ShareMounts makes every mount, the root's first, a shared one (as
// systemd does), so that a mount made later under a directory a
// container binds with rshared propagation (/mnt, /media in the console
// and User Docker) shows in the container too, and one made in the
// container shows on the host. Mounts are private without it.
func ShareMounts() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make mounts shared: %w", err)
	}
	return nil
}

// MountAll applies mounts in order, logging each with its duration. A
// failed optional mount is logged; a failed required one is returned.
func MountAll(log *Logger, mounts []Mount) error {
	for _, m := range mounts {
		start := time.Now()
		err := m.Apply()
		switch {
		case err != nil && m.Optional:
			log.Printf("%s: %v (optional, going on)", m, err)
		case err != nil:
			return err
		default:
			log.Printf("%s (%s)", m, time.Since(start).Round(time.Microsecond))
		}
	}
	return nil
}

// Symlinks of early boot: name -> target.
func EarlySymlinks() [][2]string {
	return [][2]string{
		{"/dev/fd", "/proc/self/fd"},
		{"/dev/stdin", "/proc/self/fd/0"},
		{"/dev/stdout", "/proc/self/fd/1"},
		{"/dev/stderr", "/proc/self/fd/2"},
		{"/var/run", "../run"},
	}
}

// MakeSymlinks creates the links that do not exist yet.
func MakeSymlinks(links [][2]string) error {
	for _, l := range links {
		if _, err := os.Lstat(l[0]); err == nil {
			continue
		}
		if err := os.Symlink(l[1], l[0]); err != nil {
			return fmt.Errorf("ln -s %s %s: %w", l[1], l[0], err)
		}
	}
	return nil
}

// IsMountPoint says whether p is the root of a mount: on another device
// than its parent directory.
func IsMountPoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(p, &st) != nil || unix.Lstat(p+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// CgroupControllers are the cgroup2 controllers PID 1 enables for the
// engines' containers (docker enables them too when it starts one).
func CgroupControllers() []string { return []string{"cpuset", "cpu", "io", "memory", "pids"} }

// PrimeCgroups enables the controllers in the cgroup2 root at dir and
// creates dir/name, a child cgroup that is kept, empty, for the machine's
// life. The first non-root memory and cpuset cgroups switch static keys
// in the kernel's hottest paths (slab allocation, the page allocator), and
// the kernel patches its own code to do it. Done here, while PID 1 is
// the only process, rather than when the first container starts with
// both vCPUs busy: under qemu's multi-threaded TCG that patching, while
// the other vCPU runs the patched code, has hung the guest (one vCPU
// looping on int3 in __kmem_cache_alloc_node, the other spinning in
// native_queued_spin_lock_slowpath). The cgroup must stay: removing it
// would switch the cpuset keys back, and the next container on again.
func PrimeCgroups(dir, name string) error {
	// One write per controller: one the kernel lacks does not stop the rest.
	var errs []error
	for _, c := range CgroupControllers() {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("enable cgroup controller %s: %w", c, err))
		}
	}
	if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		errs = append(errs, fmt.Errorf("prime cgroups: %w", err))
	}
	return errors.Join(errs...)
}
