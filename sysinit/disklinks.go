package sysinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FS is what ProbeFS found on a block device.
type FS struct {
	Type  string // ext4 (any ext2/3/4), vfat, iso9660
	Label string
	UUID  string
}

// ErrNoFS means no filesystem ProbeFS knows was found.
var ErrNoFS = errors.New("no known filesystem")

// ProbeFS reads the label and UUID of an ext2/3/4, FAT or ISO9660
// filesystem from its superblock, as blkid does for /dev/disk/by-label.
func ProbeFS(r io.ReaderAt) (FS, error) {
	sb := make([]byte, 1024)
	if n, _ := r.ReadAt(sb, 1024); n == len(sb) && binary.LittleEndian.Uint16(sb[0x38:]) == 0xEF53 {
		u := sb[0x68:0x78]
		return FS{Type: "ext4", Label: cstring(sb[0x78:0x88]),
			UUID: fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])}, nil
	}
	iso := make([]byte, 72)
	if n, _ := r.ReadAt(iso, 32768); n == len(iso) && string(iso[1:6]) == "CD001" {
		return FS{Type: "iso9660", Label: strings.TrimRight(string(iso[40:72]), " \x00")}, nil
	}
	bs := make([]byte, 512)
	if n, _ := r.ReadAt(bs, 0); n == len(bs) && bs[510] == 0x55 && bs[511] == 0xAA {
		var id uint32
		var label string
		switch {
		case string(bs[0x52:0x57]) == "FAT32":
			id, label = binary.LittleEndian.Uint32(bs[0x43:]), string(bs[0x47:0x52])
		case string(bs[0x36:0x39]) == "FAT":
			id, label = binary.LittleEndian.Uint32(bs[0x27:]), string(bs[0x2B:0x36])
		default:
			return FS{}, ErrNoFS
		}
		label = strings.TrimRight(label, " \x00")
		if label == "NO NAME" {
			label = ""
		}
		return FS{Type: "vfat", Label: label, UUID: fmt.Sprintf("%04X-%04X", id>>16, id&0xffff)}, nil
	}
	return FS{}, ErrNoFS
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// linkName escapes a label the way udev does for by-label names.
func linkName(s string) string {
	r := strings.NewReplacer("/", `\x2f`, " ", `\x20`, `\`, `\x5c`)
	return r.Replace(s)
}

// LinkDisk makes devDir/disk/by-label/LABEL and devDir/disk/by-uuid/UUID
// point at the block device devDir/name (relative links, like udev's). A
// device without a known filesystem gets no links and no error.
func LinkDisk(devDir, name string) error {
	f, err := os.Open(filepath.Join(devDir, name))
	if err != nil {
		return fmt.Errorf("disk links for %s: %w", name, err)
	}
	fs, err := ProbeFS(f)
	f.Close()
	if errors.Is(err, ErrNoFS) {
		return UnlinkDisk(devDir, name)
	}
	if err != nil {
		return fmt.Errorf("disk links for %s: %w", name, err)
	}
	target := filepath.Join("../..", name)
	for kind, v := range map[string]string{"by-label": fs.Label, "by-uuid": fs.UUID} {
		if v == "" {
			continue
		}
		dir := filepath.Join(devDir, "disk", kind)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("disk links for %s: %w", name, err)
		}
		link := filepath.Join(dir, linkName(v))
		tmp := link + ".tmp"
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return fmt.Errorf("disk links for %s: %w", name, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			return fmt.Errorf("disk links for %s: %w", name, err)
		}
	}
	return nil
}

// UnlinkDisk removes every by-label and by-uuid link to devDir/name.
func UnlinkDisk(devDir, name string) error {
	target := filepath.Join("../..", name)
	for _, kind := range []string{"by-label", "by-uuid"} {
		ents, _ := os.ReadDir(filepath.Join(devDir, "disk", kind))
		for _, e := range ents {
			p := filepath.Join(devDir, "disk", kind, e.Name())
			if t, err := os.Readlink(p); err == nil && t == target {
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("remove %s: %w", p, err)
				}
			}
		}
	}
	return nil
}

// LinkAllDisks links every block device listed in sysDir/class/block that
// exists in devDir; it is the coldplug pass of the udev service.
func LinkAllDisks(sysDir, devDir string) error {
	ents, err := os.ReadDir(filepath.Join(sysDir, "class", "block"))
	if err != nil {
		return fmt.Errorf("list block devices: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(devDir, e.Name())); err != nil {
			continue
		}
		if err := LinkDisk(devDir, e.Name()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
