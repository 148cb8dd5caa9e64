package cloudinit

import (
	"archive/tar"
	"fmt"
	"io"
	"strings"
	"time"
)

// ContainerFiles are the write_files entries of cfg for the service
// name (`container: NAME`), in their order.
func ContainerFiles(cfg *Config, name string) []WriteFile {
	var out []WriteFile
	for _, f := range cfg.WriteFiles {
		if f.Container == name {
			out = append(out, f)
		}
	}
	return out
}

// TarFiles writes files, write_files entries meant for a container, to w
// as a tar archive rooted at "/" (what the Docker API's archive upload
// takes): each entry's decoded content, permissions and owner (names
// looked up in root's /etc/passwd and /etc/group, or numbers; root by
// default), stamped with mtime. An entry that cannot be decoded is an
// error naming its path, and nothing is written.
func TarFiles(w io.Writer, files []WriteFile, root string, mtime time.Time) error {
	type entry struct {
		hdr  *tar.Header
		data []byte
	}
	var entries []entry
	for _, f := range files {
		data, err := DecodeContent(f)
		if err != nil {
			return fmt.Errorf("tar write_files: %w", err)
		}
		perm, err := filePerm(f)
		if err != nil {
			return fmt.Errorf("tar write_files: %w", err)
		}
		uid, gid, err := lookupOwner(root, f.Owner)
		if err != nil {
			return fmt.Errorf("tar write_files: %s: owner %s: %w", f.Path, f.Owner, err)
		}
		name := strings.TrimLeft(f.Path, "/")
		if name == "" || strings.HasSuffix(name, "/") {
			return fmt.Errorf("tar write_files: %q is not a file path", f.Path)
		}
		entries = append(entries, entry{&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: int64(perm),
			Uid: uid, Gid: gid, ModTime: mtime, Format: tar.FormatPAX,
		}, data})
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := tw.WriteHeader(e.hdr); err != nil {
			return fmt.Errorf("tar write_files: %w", err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("tar write_files: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar write_files: %w", err)
	}
	return nil
}

// lookupOwner resolves "user[:group]" in root's databases; "" is root.
func lookupOwner(root, owner string) (uid, gid int, err error) {
	if owner == "" {
		return 0, 0, nil
	}
	user, group, _ := strings.Cut(owner, ":")
	if uid, gid, err = lookupUser(root, user); err != nil {
		return 0, 0, err
	}
	if group != "" {
		if gid, err = lookupGroup(root, group); err != nil {
			return 0, 0, err
		}
	}
	return uid, gid, nil
}
