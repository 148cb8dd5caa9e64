package imagestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthos/berth/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Placement is how Seed puts a layer's files into the data root.
type Placement int

const (
	// Link makes the layer's diff directory a symlink to the store's.
	// For a data root in RAM: the files stay in the (compressed,
	// read-only) system image and cost no memory but page cache. A
	// data root that outlives the boot must not link: the next version's
	// system image has other layers.
	Link Placement = iota
	// Copy copies the layer's files into the data root, once.
	Copy
)

func (p Placement) String() string {
	if p == Link {
		return "link"
	}
	return "copy"
}

// PlacementFor is Link for a data root on tmpfs or ramfs (gone at the
// next boot) and Copy for any other (a state disk). The directory is made
// if it is missing.
func PlacementFor(dataRoot string) (Placement, error) {
	if err := os.MkdirAll(dataRoot, 0o711); err != nil {
		return Copy, fmt.Errorf("image store placement: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dataRoot, &st); err != nil {
		return Copy, fmt.Errorf("image store placement: statfs %s: %w", dataRoot, err)
	}
	switch st.Type {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		return Link, nil
	}
	return Copy, nil
}

// Seed puts the store's images into dataRoot, the data root of a dockerd
// that is not running and uses the overlay2 driver. Layers the data root
// already has (from an earlier seed or `docker load`) are left alone, and
// the images' tags are added to those it has. It returns the store's tags
// when it wrote anything, nil when the data root had it all. A seed cut short is
// finished by the next one: each layer's record in the layer database is
// written last, after its files.
func (s *Store) Seed(dataRoot string, how Placement) ([]string, error) {
	d := dockerRoot(dataRoot)
	for _, dir := range []string{d.layerDB(""), d.overlay("l"), d.imageDB("")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("seed images: %w", err)
		}
	}
	changed := false
	for _, l := range s.Manifest.Layers {
		if d.hasLayer(l.ChainID) {
			continue
		}
		if err := s.seedLayer(d, l, how); err != nil {
			return nil, fmt.Errorf("seed images: layer %s: %w", l.ChainID, err)
		}
		changed = true
	}
	for _, img := range s.Manifest.Images {
		p := d.imageDB(hexOf(img.ID))
		if _, err := os.Stat(p); err == nil {
			continue
		}
		b, err := os.ReadFile(configPath(s.Dir, img.ID))
		if err != nil {
			return nil, fmt.Errorf("seed images: %w", err)
		}
		if err := atomicfile.Write(p, b, 0o600); err != nil {
			return nil, fmt.Errorf("seed images: %w", err)
		}
		changed = true
	}
	tagged, err := s.tag(d)
	if err != nil {
		return nil, fmt.Errorf("seed images: %w", err)
	}
	if !changed && !tagged {
		return nil, nil
	}
	return s.Refs(), nil
}

// dockerRoot is a dockerd data root's overlay2 paths.
type dockerRoot string

func (d dockerRoot) layerDB(hex string) string {
	return filepath.Join(string(d), "image", "overlay2", "layerdb", "sha256", hex)
}
func (d dockerRoot) imageDB(hex string) string {
	return filepath.Join(string(d), "image", "overlay2", "imagedb", "content", "sha256", hex)
}
func (d dockerRoot) repositories() string {
	return filepath.Join(string(d), "image", "overlay2", "repositories.json")
}
func (d dockerRoot) overlay(name string) string { return filepath.Join(string(d), "overlay2", name) }

// hasLayer reports whether the layer database records chain.
func (d dockerRoot) hasLayer(chain string) bool {
	_, err := os.Stat(filepath.Join(d.layerDB(hexOf(chain)), "cache-id"))
	return err == nil
}

// lowerOf is what a layer on top of chain has in its overlay2 "lower"
// file: chain's link, then the layers under it, as dockerd writes it.
func (d dockerRoot) lowerOf(chain string) (string, error) {
	cache, err := os.ReadFile(filepath.Join(d.layerDB(hexOf(chain)), "cache-id"))
	if err != nil {
		return "", err
	}
	dir := d.overlay(strings.TrimSpace(string(cache)))
	link, err := os.ReadFile(filepath.Join(dir, "link"))
	if err != nil {
		return "", err
	}
	lower := "l/" + strings.TrimSpace(string(link))
	if under, err := os.ReadFile(filepath.Join(dir, "lower")); err == nil {
		lower += ":" + strings.TrimSpace(string(under))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return lower, nil
}

func (s *Store) seedLayer(d dockerRoot, l Layer, how Placement) error {
	cache, link := hexOf(l.ChainID), linkID(l.ChainID)
	dir := d.overlay(cache)
	tmp := dir + "-seed"
	for _, p := range []string{dir, tmp} {
		if err := os.RemoveAll(p); err != nil { // an interrupted seed's
			return err
		}
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	src := diffDir(s.Dir, l.ChainID)
	if how == Link {
		if err := os.Symlink(src, filepath.Join(tmp, "diff")); err != nil {
			return err
		}
	} else if err := copyTree(src, filepath.Join(tmp, "diff")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "link"), []byte(link), 0o644); err != nil {
		return err
	}
	if l.Parent != "" {
		lower, err := d.lowerOf(l.Parent)
		if err != nil {
			return fmt.Errorf("parent %s: %w", l.Parent, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "lower"), []byte(lower), 0o644); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(tmp, "work"), 0o700); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	short := d.overlay(filepath.Join("l", link))
	if err := os.Remove(short); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Symlink(filepath.Join("..", cache, "diff"), short); err != nil {
		return err
	}

	// The layer database's record, last: dockerd knows the layer only
	// once it is whole.
	rec := d.layerDB(hexOf(l.ChainID))
	rtmp := rec + "-seed" // not a digest: dockerd skips it
	if err := os.RemoveAll(rtmp); err != nil {
		return err
	}
	if err := os.Mkdir(rtmp, 0o700); err != nil {
		return err
	}
	files := map[string]string{"diff": l.DiffID, "size": strconv.FormatInt(l.Size, 10), "cache-id": cache}
	if l.Parent != "" {
		files["parent"] = l.Parent
	}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(rtmp, name), []byte(v), 0o644); err != nil {
			return err
		}
	}
	if err := copyFile(tarSplitPath(s.Dir, l.ChainID), filepath.Join(rtmp, "tar-split.json.gz")); err != nil {
		return err
	}
	if err := os.RemoveAll(rec); err != nil {
		return err
	}
	return os.Rename(rtmp, rec)
}

// repositoriesFile is dockerd's tag store.
type repositoriesFile struct {
	Repositories map[string]map[string]string `json:"Repositories"`
}

// tag adds the store's tags to the data root's tag store and reports
// whether it changed.
func (s *Store) tag(d dockerRoot) (bool, error) {
	var rf repositoriesFile
	b, err := os.ReadFile(d.repositories())
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &rf); err != nil {
			return false, fmt.Errorf("read %s: %w", d.repositories(), err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	if rf.Repositories == nil {
		rf.Repositories = map[string]map[string]string{}
	}
	changed := false
	for _, img := range s.Manifest.Images {
		for _, ref := range img.Refs {
			// dockerd keys tags by their familiar name: "berth/base".
			repo := ref
			if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
				repo = ref[:i]
			}
			if rf.Repositories[repo] == nil {
				rf.Repositories[repo] = map[string]string{}
			}
			if rf.Repositories[repo][ref] != img.ID {
				rf.Repositories[repo][ref] = img.ID
				changed = true
			}
		}
	}
	if !changed {
		return false, nil
	}
	out, err := json.Marshal(rf)
	if err != nil {
		return false, err
	}
	return true, atomicfile.Write(d.repositories(), out, 0o600)
}

// copyTree copies the directory src to dst (which must not exist): the
// files, symlinks and directories with their modes and owners.
func copyTree(src, dst string) error {
	type dirMode struct {
		path string
		mode uint32
	}
	var dirs []dirMode
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := e.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner", p)
		}
		switch {
		case e.IsDir():
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{to, st.Mode & 0o7777})
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case e.Type().IsRegular():
			if err := copyFile(p, to); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %s files are not supported", p, e.Type())
		}
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if e.Type().IsRegular() {
			return unix.Chmod(to, st.Mode&0o7777) // after chown, which clears set-user-ID
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	return nil
}

// copyFile copies the regular file src to a new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
