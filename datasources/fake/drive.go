package fake

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// DriveFiles is the layout of the default fake config drive: the
// OpenStack metadata (the same as the fake service's), user-data,
// EC2-style addresses and one injected file.
func DriveFiles(userData []byte) map[string][]byte {
	md := bytes.Replace([]byte(OpenStackMetaData), []byte(`"launch_index": 0,`),
		[]byte(`"launch_index": 0, "files": [{"content_path": "/content/0000", "path": "/etc/berth-injected"}],`), 1)
	m := map[string][]byte{
		"openstack/latest/meta_data.json":    md,
		"openstack/latest/network_data.json": []byte(OpenStackNetworkData),
		"openstack/content/0000":             []byte("injected by the fake drive\n"),
		"ec2/latest/meta-data.json":          []byte(`{"local-ipv4": "192.0.2.30", "public-ipv4": "203.0.113.30"}`),
	}
	if userData != nil {
		m["openstack/latest/user_data"] = userData
	}
	return m
}

// BuildISO writes an ISO9660 image with Rock Ridge and Joliet, as
// genisoimage -R -J would, holding files (paths relative to the root).
func BuildISO(img, label string, files map[string][]byte) error {
	_ = os.Remove(img)
	var total int64
	for _, b := range files {
		total += int64(len(b)) + 2048
	}
	b, err := file.CreateFromPath(img, 1<<20+2*total)
	if err != nil {
		return fmt.Errorf("build iso %s: %w", img, err)
	}
	defer b.Close()
	work, err := os.MkdirTemp("", "berth-iso-")
	if err != nil {
		return fmt.Errorf("build iso %s: %w", img, err)
	}
	defer os.RemoveAll(work)
	fsys, err := iso9660.Create(b, 0, 0, 2048, work)
	if err != nil {
		return fmt.Errorf("build iso %s: %w", img, err)
	}
	for _, p := range sortedKeys(files) {
		if err := fsys.Mkdir("/" + path.Dir(p)); err != nil {
			return fmt.Errorf("build iso %s: mkdir %s: %w", img, path.Dir(p), err)
		}
		f, err := fsys.OpenFile("/"+p, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("build iso %s: %s: %w", img, p, err)
		}
		if _, err := f.Write(files[p]); err != nil {
			return fmt.Errorf("build iso %s: %s: %w", img, p, err)
		}
		f.Close()
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, Joliet: true, VolumeIdentifier: label}); err != nil {
		return fmt.Errorf("build iso %s: finalize: %w", img, err)
	}
	return nil
}

// FATTools reports whether mkfs.vfat and mcopy are installed (Debian
// dosfstools and mtools).
func FATTools() error {
	for _, t := range []string{"mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found (install dosfstools and mtools): %w", t, err)
		}
	}
	return nil
}

// BuildFAT writes a FAT12, FAT16 or FAT32 image (bits 12, 16 or 32) with
// mkfs.vfat and mcopy, holding files. go-diskfs's FAT writer is not used:
// fsck rejects its images.
func BuildFAT(img, label string, bits int, files map[string][]byte) error {
	sizeKiB := map[int]int{12: 2048, 16: 16 * 1024, 32: 40 * 1024}[bits]
	if sizeKiB == 0 {
		return fmt.Errorf("build fat %s: FAT%d: want 12, 16 or 32", img, bits)
	}
	_ = os.Remove(img)
	src, err := os.MkdirTemp("", "berth-fat-")
	if err != nil {
		return fmt.Errorf("build fat %s: %w", img, err)
	}
	defer os.RemoveAll(src)
	for p, b := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("build fat %s: %w", img, err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			return fmt.Errorf("build fat %s: %w", img, err)
		}
	}
	run := func(name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build fat %s: %s: %w: %s", img, name, err, out)
		}
		return nil
	}
	if err := run("mkfs.vfat", "-F", strconv.Itoa(bits), "-n", label, "-C", img, strconv.Itoa(sizeKiB)); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("build fat %s: %w", img, err)
	}
	for _, e := range ents {
		if err := run("mcopy", "-s", "-i", img, filepath.Join(src, e.Name()), "::/"); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
