package install

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/berthos/berth/bootstrap"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// The kernel and initrd as berth.iso and an installed state partition
// carry them, and the system image beside them (berth.iso's /boot/initrd
// is the small one, without it).
const (
	KernelPath     = "/boot/vmlinuz"
	InitrdPath     = "/boot/initrd"
	ISOImagePath   = "/" + bootstrap.MediaImagePath
	StateImagePath = "/" + bootstrap.StateImagePath
)

// Sources are the files an install copies to the state partition.
type Sources struct {
	Kernel string
	Initrd string
	// SystemImage is the system image beside a small initrd; "" when
	// the initrd holds it (the whole initrd, or an older Berth's).
	SystemImage string
}

// FromISO copies /boot/vmlinuz, /boot/initrd and the system image out of
// a Berth ISO (an image file or the CD-ROM device it booted from, read in
// Go: no mount) into dir, and returns their paths. An ISO whose initrd
// holds the system image has none beside it: SystemImage is "".
func FromISO(iso, dir string) (Sources, error) {
	b, err := file.OpenFromPath(iso, true)
	if err != nil {
		return Sources{}, fmt.Errorf("open ISO %s: %w", iso, err)
	}
	defer b.Close()
	fsys, err := iso9660.Read(b, 0, 0, 2048)
	if err != nil {
		return Sources{}, fmt.Errorf("read ISO %s: %w", iso, err)
	}
	var src Sources
	for _, f := range []struct {
		path     string
		dst      *string
		optional bool
	}{
		{KernelPath, &src.Kernel, false},
		{InitrdPath, &src.Initrd, false},
		{ISOImagePath, &src.SystemImage, true},
	} {
		out := filepath.Join(dir, filepath.Base(f.path))
		found, err := extract(fsys, f.path, out)
		switch {
		case !found && f.optional:
		case err != nil:
			return Sources{}, fmt.Errorf("extract %s from ISO %s: %w", f.path, iso, err)
		default:
			*f.dst = out
		}
	}
	return src, nil
}

// extract copies path out of fsys to out; found is false when path could
// not be opened.
func extract(fsys filesystem.FileSystem, path, out string) (found bool, err error) {
	src, err := fsys.OpenFile(path, os.O_RDONLY)
	if err != nil {
		return false, err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return true, err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return true, err
	}
	return true, dst.Close()
}

// FindSources picks the kernel, initrd and system image to install: those
// under root's /boot or on the mounted state partition (an installed
// system), else the first Berth ISO among isos (the boot CD-ROM),
// extracted into dir.
func FindSources(root, dir string, isos ...string) (Sources, error) {
	for _, base := range []string{root, filepath.Join(root, "mnt/state")} {
		src := Sources{Kernel: filepath.Join(base, KernelPath), Initrd: filepath.Join(base, InitrdPath)}
		if regular(src.Kernel) && regular(src.Initrd) {
			if img := filepath.Join(base, StateImagePath); regular(img) {
				src.SystemImage = img
			}
			return src, nil
		}
	}
	var errs []error
	for _, iso := range isos {
		if _, err := os.Stat(iso); err != nil {
			continue
		}
		src, err := FromISO(iso, dir)
		if err == nil {
			return src, nil
		}
		errs = append(errs, err)
	}
	return Sources{}, fmt.Errorf("find kernel and initrd: none under %s/boot and no Berth ISO at %v (use --iso or --kernel/--initrd): %v", root, isos, errs)
}

func regular(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
