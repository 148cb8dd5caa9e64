package image

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cavaliergopher/cpio"
)

// WriteCPIO writes the tree under dir as a newc cpio archive to w, the
// format the kernel unpacks as an initramfs. The archive is reproducible:
// entries are in byte order of their paths, owned by root, with mtime
// set to mtime and inode numbers assigned in order; only the permission
// bits and contents of the files matter.
func WriteCPIO(w io.Writer, dir string, mtime time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cpio: walk %s: %w", dir, err)
	}
	sort.Strings(paths)
	cw := cpio.NewWriter(w)
	for i, p := range paths {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("cpio: %w", err)
		}
		h := &cpio.Header{
			Name:    rel,
			Mode:    cpio.FileMode(fi.Mode().Perm()),
			ModTime: mtime,
			Inode:   int64(i + 1),
			Links:   1,
		}
		if fi.Mode()&fs.ModeSetuid != 0 {
			h.Mode |= cpio.ModeSetuid
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			h.Mode |= cpio.ModeSticky
		}
		var body []byte
		switch {
		case fi.IsDir():
			h.Mode |= cpio.TypeDir
			h.Links = 2
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("cpio: %w", err)
			}
			h.Mode |= cpio.TypeSymlink
			body = []byte(target)
		case fi.Mode().IsRegular():
			h.Mode |= cpio.TypeReg
			if body, err = os.ReadFile(p); err != nil {
				return fmt.Errorf("cpio: %w", err)
			}
		default:
			return fmt.Errorf("cpio: %s: unsupported file type %v", p, fi.Mode().Type())
		}
		h.Size = int64(len(body))
		if err := cw.WriteHeader(h); err != nil {
			return fmt.Errorf("cpio: header %s: %w", rel, err)
		}
		if _, err := cw.Write(body); err != nil {
			return fmt.Errorf("cpio: write %s: %w", rel, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("cpio: close: %w", err)
	}
	return nil
}
