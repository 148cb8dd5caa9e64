package bootstrap

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// StateLabel is the label of Berth's (and RancherOS's) state filesystem.
const StateLabel = "RANCHER_STATE"

// StateMount is where the state filesystem is mounted before its
// directories are bound to the persistent paths.
const StateMount = "/mnt/state"

// PersistentPaths are kept on the state disk (ARCHITECTURE.md).
func PersistentPaths() []string {
	return []string{
		"/var/lib/system-docker", "/var/lib/docker",
		"/var/lib/rancher/conf", "/var/lib/rancher/cache", "/var/lib/rancher/preload",
		"/home", "/opt", "/var/log",
	}
}

// StateOptions is what `rancher.state` says about the state disk.
type StateOptions struct {
	Dev        string        // "LABEL=RANCHER_STATE", "UUID=...", "/dev/vda"
	FSType     string        // "ext4" when empty
	Autoformat []string      // devices that may be formatted when blank
	Wait       time.Duration // how long to wait for Dev to appear (0: look once)
	// Mkfs is the mkfs command (default mke2fs from the system image).
	Mkfs string
}

// ext4 superblock fields (offsets from the start of the device).
const (
	sbOffset   = 1024
	sbMagicOff = sbOffset + 56
	sbUUIDOff  = sbOffset + 104
	sbLabelOff = sbOffset + 120
	ext4Magic  = 0xEF53
)

// FSIdentity is the label and UUID of an ext2/3/4 filesystem or a swap
// area.
type FSIdentity struct {
	Label string
	UUID  string
}

// ReadExtIdentity reads the ext superblock of r; ok is false when r holds
// no ext filesystem.
func ReadExtIdentity(r io.ReaderAt) (id FSIdentity, ok bool) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, sbOffset); err != nil {
		return id, false
	}
	if binary.LittleEndian.Uint16(sb[56:]) != ext4Magic {
		return id, false
	}
	id.Label = string(bytes.TrimRight(sb[120:136], "\x00"))
	id.UUID = formatUUID(sb[104:120])
	return id, true
}

// formatUUID writes a 16-byte UUID in its usual 8-4-4-4-12 form.
func formatUUID(u []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// blockDevices lists /dev/<name> for every block device, sorted.
func blockDevices() []string {
	ents, _ := os.ReadDir("/sys/class/block")
	var out []string
	for _, e := range ents {
		out = append(out, "/dev/"+e.Name())
	}
	sort.Strings(out)
	return out
}

// FindDevice resolves LABEL=, UUID= (of an ext2/3/4 filesystem or a swap
// area) or a path to a device node; "" when nothing matches.
func FindDevice(spec string) string {
	key, val, ok := strings.Cut(spec, "=")
	if !ok {
		if _, err := os.Stat(spec); err == nil {
			return spec
		}
		return ""
	}
	for _, dev := range blockDevices() {
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		id, ok := ReadExtIdentity(f)
		if !ok {
			id, ok = ReadSwapIdentity(f)
		}
		f.Close()
		if !ok {
			continue
		}
		if (key == "LABEL" && id.Label == val) || (key == "UUID" && strings.EqualFold(id.UUID, val)) {
			return dev
		}
	}
	return ""
}

// IsBlank says whether the first MiB of r is all zeros: the only state in
// which Berth formats a disk on its own.
func IsBlank(r io.ReaderAt) (bool, error) {
	buf := make([]byte, 1<<20)
	n, err := r.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return false, err
	}
	if n == 0 {
		return false, nil
	}
	for _, b := range buf[:n] {
		if b != 0 {
			return false, nil
		}
	}
	return true, nil
}

// SetupState finds (waiting up to o.Wait), or formats a blank autoformat
// device, and mounts the state disk, then binds PersistentPaths onto it.
// It returns the device used, or "" when there is none and the machine
// runs from RAM.
func SetupState(ctx context.Context, log *Logger, o StateOptions) (string, error) {
	o.Dev = stateSpec(o)
	if o.FSType == "" {
		o.FSType = "ext4"
	}
	deadline := time.Now().Add(o.Wait)
	dev := FindDevice(o.Dev)
	for dev == "" && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		dev = FindDevice(o.Dev)
	}
	if dev == "" {
		for _, cand := range o.Autoformat {
			f, err := os.Open(cand)
			if err != nil {
				continue
			}
			blank, err := IsBlank(f)
			f.Close()
			if err != nil || !blank {
				if !blank {
					log.Printf("state: %s is not blank (first MiB has data); not formatting it", cand)
				}
				continue
			}
			if err := formatState(ctx, log, o, cand); err != nil {
				return "", err
			}
			dev = cand
			break
		}
	}
	if dev == "" {
		return "", nil
	}
	// Already mounted when the system image was found on it: Apply
	// leaves a mount point as it is.
	if err := stateMount(dev, o, StateMount).Apply(); err != nil {
		return "", fmt.Errorf("state disk: %w", err)
	}
	for _, p := range PersistentPaths() {
		if err := bindPersistent(p); err != nil {
			return dev, err
		}
	}
	return dev, nil
}

// stateSpec is the state device o names: LABEL=RANCHER_STATE by default.
func stateSpec(o StateOptions) string {
	if o.Dev == "" {
		return "LABEL=" + StateLabel
	}
	return o.Dev
}

// stateMount is how the state filesystem on dev is mounted on target.
func stateMount(dev string, o StateOptions, target string) Mount {
	fs := o.FSType
	if fs == "" {
		fs = "ext4"
	}
	return Mount{Source: dev, Target: target, FSType: fs, Flags: unix.MS_RELATIME}
}

func formatState(ctx context.Context, log *Logger, o StateOptions, dev string) error {
	mkfs := o.Mkfs
	if mkfs == "" {
		mkfs = "mke2fs"
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", o.FSType, "-L", StateLabel, dev)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("format state disk %s: %w: %s", dev, err, bytes.TrimSpace(out))
	}
	log.Printf("state: formatted blank %s as %s labelled %s (%s)", dev, o.FSType, StateLabel, time.Since(start).Round(time.Millisecond))
	return nil
}

// bindPersistent binds StateMount/p onto p, creating both; what the
// image had at p is copied to the state disk the first time.
func bindPersistent(p string) error {
	src := filepath.Join(StateMount, p)
	if _, err := os.Stat(src); os.IsNotExist(err) {
		if err := os.MkdirAll(src, 0o755); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return Mount{Source: src, Target: p, Flags: unix.MS_BIND}.Apply()
}
