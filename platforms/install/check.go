package install

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrRefused is what Check's errors wrap: the device is in use or holds
// data, and the install was not forced.
var ErrRefused = errors.New("refusing to install")

// RefusedError says why a device was refused.
type RefusedError struct {
	Device string
	Reason string // "is mounted at /x", "holds an ext4 filesystem (label ...)"
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s %s; refusing to install over it (use -f to force)", e.Device, e.Reason)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Check refuses device when it (or a partition on it, or the loop device
// backed by it) is mounted, or when it holds a filesystem or a partition
// table. mountinfo is the mount table to look in ("" for
// /proc/self/mountinfo).
func Check(device, mountinfo string) error {
	if mountinfo == "" {
		mountinfo = "/proc/self/mountinfo"
	}
	if where, err := mountedAt(device, mountinfo); err != nil {
		return fmt.Errorf("check %s: %w", device, err)
	} else if where != "" {
		return &RefusedError{Device: device, Reason: "is mounted at " + where}
	}
	f, err := os.Open(device)
	if err != nil {
		return fmt.Errorf("check %s: %w", device, err)
	}
	defer f.Close()
	if what := Identify(f); what != "" {
		return &RefusedError{Device: device, Reason: "holds " + what}
	}
	return nil
}

// Identify names the filesystem or partition table at the start of r, or
// returns "" when it finds none it knows.
func Identify(r io.ReaderAt) string {
	buf := make([]byte, 68*1024)
	n, _ := r.ReadAt(buf, 0)
	buf = buf[:n]
	at := func(off int, sig string) bool {
		return len(buf) >= off+len(sig) && string(buf[off:off+len(sig)]) == sig
	}
	switch {
	case len(buf) >= 1024+58 && binary.LittleEndian.Uint16(buf[1024+56:]) == 0xEF53:
		label := string(bytes.TrimRight(buf[1024+120:1024+136], "\x00"))
		if label != "" {
			return fmt.Sprintf("an ext2/3/4 filesystem labelled %q", label)
		}
		return "an ext2/3/4 filesystem"
	case at(512, "EFI PART"):
		return "a GPT partition table"
	case at(0, "hsqs"):
		return "a squashfs filesystem"
	case at(0, "XFSB"):
		return "an XFS filesystem"
	case at(0x10040, "_BHRfS_M"):
		return "a btrfs filesystem"
	case at(0x8001, "CD001"):
		return "an ISO 9660 filesystem"
	case at(4086, "SWAPSPACE2"):
		return "a swap area"
	case at(512+24, "LVM2 001"):
		return "an LVM physical volume"
	case at(0x36, "FAT") || at(0x52, "FAT32"):
		return "a FAT filesystem"
	case at(510, "\x55\xaa") && !allZero(buf[446:510]):
		return "an MBR partition table"
	}
	return ""
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// mountedAt returns the mount point of device or of anything on it, or "".
func mountedAt(device, mountinfo string) (string, error) {
	devs, err := blockNames(device)
	if err != nil {
		return "", err
	}
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	abs, _ := filepath.Abs(device)
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, fl := range fields {
			if fl == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+2 >= len(fields) {
			continue
		}
		source := fields[sep+2]
		if r, err := filepath.EvalSymlinks(source); err == nil {
			source = r
		}
		name := strings.TrimPrefix(source, "/dev/")
		if source == abs || (name != source && devs[name]) {
			return unescape(fields[4]), nil
		}
	}
	return "", sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// blockNames lists the kernel names of device, its partitions and, for a
// regular file, the loop devices backed by it and their partitions.
func blockNames(device string) (map[string]bool, error) {
	st, err := os.Stat(device)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", device, err)
	}
	names := map[string]bool{}
	var bases []string
	switch {
	case st.Mode()&os.ModeDevice != 0:
		sys, ok := st.Sys().(*unix.Stat_t)
		if !ok {
			break
		}
		link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(sys.Rdev), unix.Minor(sys.Rdev)))
		if err == nil {
			bases = append(bases, filepath.Base(link))
		}
	case st.Mode().IsRegular():
		abs, _ := filepath.Abs(device)
		loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, bf := range loops {
			b, err := os.ReadFile(bf)
			if err != nil {
				continue
			}
			backing := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
			if same(backing, abs) {
				bases = append(bases, filepath.Base(filepath.Dir(filepath.Dir(bf))))
			}
		}
	}
	for _, base := range bases {
		names[base] = true
		parts, _ := filepath.Glob("/sys/class/block/" + base + "/" + base + "*")
		for _, p := range parts {
			names[filepath.Base(p)] = true
		}
		holders, _ := os.ReadDir("/sys/class/block/" + base + "/holders")
		for _, h := range holders {
			names[h.Name()] = true
		}
	}
	return names, nil
}

func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
