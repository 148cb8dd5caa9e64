package install

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// The kernel and initrd as berth.iso and an installed state partition
// carry them.
const (
	KernelPath = "/boot/vmlinuz"
	InitrdPath = "/boot/initrd"
)

// FromISO copies /boot/vmlinuz and /boot/initrd out of a Berth ISO (an
// image file or the CD-ROM device it booted from, read in Go: no mount)
// into dir, and returns their paths.
func FromISO(iso, dir string) (kernel, initrd string, err error) {
	b, err := file.OpenFromPath(iso, true)
	if err != nil {
		return "", "", fmt.Errorf("open ISO %s: %w", iso, err)
	}
	defer b.Close()
	fsys, err := iso9660.Read(b, 0, 0, 2048)
	if err != nil {
		return "", "", fmt.Errorf("read ISO %s: %w", iso, err)
	}
	out := make([]string, 2)
	for i, p := range []string{KernelPath, InitrdPath} {
		src, err := fsys.OpenFile(p, os.O_RDONLY)
		if err != nil {
			return "", "", fmt.Errorf("read %s from ISO %s: %w", p, iso, err)
		}
		out[i] = filepath.Join(dir, filepath.Base(p))
		dst, err := os.Create(out[i])
		if err != nil {
			src.Close()
			return "", "", fmt.Errorf("extract %s: %w", p, err)
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", "", fmt.Errorf("extract %s from ISO %s: %w", p, iso, err)
		}
	}
	return out[0], out[1], nil
}

// FindSources picks the kernel and initrd to install: those under root's
// /boot or on the mounted state partition (an installed system), else the
// first Berth ISO among isos (the boot CD-ROM), extracted into dir.
func FindSources(root, dir string, isos ...string) (kernel, initrd string, err error) {
	for _, base := range []string{root, filepath.Join(root, "mnt/state")} {
		k, i := filepath.Join(base, KernelPath), filepath.Join(base, InitrdPath)
		if regular(k) && regular(i) {
			return k, i, nil
		}
	}
	var errs []error
	for _, iso := range isos {
		if _, err := os.Stat(iso); err != nil {
			continue
		}
		k, i, err := FromISO(iso, dir)
		if err == nil {
			return k, i, nil
		}
		errs = append(errs, err)
	}
	return "", "", fmt.Errorf("find kernel and initrd: none under %s/boot and no Berth ISO at %v (use --iso or --kernel/--initrd): %v", root, isos, errs)
}

func regular(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
