package install

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthos/berth/bootstrap"
	"github.com/cavaliergopher/cpio"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// The kernel and initrd as berth.iso and an installed state partition
// carry them, and the system image on the ISO (whose /boot/initrd is the
// small one, without it).
const (
	KernelPath   = "/boot/vmlinuz"
	InitrdPath   = "/boot/initrd"
	ISOImagePath = "/" + bootstrap.MediaImagePath
)

// FromISO copies /boot/vmlinuz and /boot/initrd out of a Berth ISO (an
// image file or the CD-ROM device it booted from, read in Go: no mount)
// into dir, and returns their paths. When the ISO carries the system
// image beside its small initrd, the initrd written is the one an
// installed disk boots: the small one followed by a cpio holding the
// system image, as `make image` builds it.
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
	if err := appendSystemImage(fsys, out[1]); err != nil {
		return "", "", fmt.Errorf("initrd from ISO %s: %w", iso, err)
	}
	return out[0], out[1], nil
}

// appendSystemImage appends the ISO's system image to the initrd at path
// as a second, uncompressed cpio archive (berth/system.sqfs), if the ISO
// has one. The kernel unpacks concatenated archives; an uncompressed one
// must start 4-byte aligned, so the first is padded with zeros.
func appendSystemImage(fsys filesystem.FileSystem, path string) error {
	src, err := fsys.OpenFile(ISOImagePath, os.O_RDONLY)
	if err != nil {
		return nil // an ISO whose initrd holds the image
	}
	defer src.Close()
	var size int64
	var mtime time.Time
	// go-diskfs's ReadDir takes paths without the leading slash.
	if ents, err := fsys.ReadDir(strings.TrimPrefix(filepath.Dir(ISOImagePath), "/")); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && e.Name() == filepath.Base(ISOImagePath) {
				size, mtime = fi.Size(), fi.ModTime()
			}
		}
	}
	if size == 0 {
		return fmt.Errorf("%s: no size in its directory", ISOImagePath)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if pad := (4 - st.Size()%4) % 4; pad > 0 {
		if _, err := f.Write(make([]byte, pad)); err != nil {
			f.Close()
			return err
		}
	}
	cw := cpio.NewWriter(f)
	name := strings.TrimPrefix(ISOImagePath, "/")
	hdrs := []*cpio.Header{
		{Name: filepath.Dir(name), Mode: cpio.TypeDir | 0o755, ModTime: mtime, Inode: 1, Links: 2},
		{Name: name, Mode: cpio.TypeReg | 0o644, ModTime: mtime, Inode: 2, Links: 1, Size: size},
	}
	for _, h := range hdrs {
		if err := cw.WriteHeader(h); err != nil {
			f.Close()
			return err
		}
	}
	if n, err := io.Copy(cw, src); err != nil || n != size {
		f.Close()
		return fmt.Errorf("copy %s: %d of %d bytes: %v", ISOImagePath, n, size, err)
	}
	if err := cw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
