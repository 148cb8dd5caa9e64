package imagestore

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"
)

// Source is one image to write: its tags, its config's bytes (the image
// ID is their digest) and its layers as uncompressed tars, bottom first.
type Source struct {
	Refs   []string
	Config []byte
	Layers [][]byte
}

// Write makes the store of images in dir, replacing what was there. Layers
// that images share are stored once. Files keep the modes of their tar
// headers and, when run as root, their owners; times are not kept (the
// system image sets them all, for reproducible builds). The layers may
// hold directories, regular files, symlinks and hard links, not devices
// or whiteouts.
func Write(dir string, images []Source) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("write image store: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "images"), 0o755); err != nil {
		return fmt.Errorf("write image store: %w", err)
	}
	var m Manifest
	seen := map[string]bool{}
	for _, src := range images {
		sum := sha256.Sum256(src.Config)
		img := Image{Refs: src.Refs, ID: fmt.Sprintf("sha256:%x", sum)}
		parent := ""
		for _, layer := range src.Layers {
			diffSum := sha256.Sum256(layer)
			l := Layer{DiffID: fmt.Sprintf("sha256:%x", diffSum), Parent: parent, TarSize: int64(len(layer))}
			l.ChainID = chainID(parent, l.DiffID)
			img.Chain = append(img.Chain, l.ChainID)
			parent = l.ChainID
			if seen[l.ChainID] {
				continue
			}
			seen[l.ChainID] = true
			size, err := writeLayer(tmp, l.ChainID, layer)
			if err != nil {
				return fmt.Errorf("write image store: %s: %w", strings.Join(src.Refs, ","), err)
			}
			l.Size = size
			m.Layers = append(m.Layers, l)
		}
		if err := os.WriteFile(configPath(tmp, img.ID), src.Config, 0o644); err != nil {
			return fmt.Errorf("write image store: %w", err)
		}
		m.Images = append(m.Images, img)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write image store: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ManifestName), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write image store: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("write image store: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("write image store: %w", err)
	}
	return nil
}

// writeLayer unpacks layer into the store's diff directory of chain and
// records its tar-split; it returns the bytes of file content.
func writeLayer(dir, chain string, layer []byte) (int64, error) {
	diff := diffDir(dir, chain)
	if err := os.MkdirAll(diff, 0o755); err != nil {
		return 0, err
	}
	size, err := unpack(diff, layer)
	if err != nil {
		return 0, fmt.Errorf("unpack layer %s: %w", chain, err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	r, done, err := asm.NewInputTarStreamWithDone(bytes.NewReader(layer), storage.NewJSONPacker(zw), nil)
	if err != nil {
		return 0, fmt.Errorf("tar-split of layer %s: %w", chain, err)
	}
	_, err = io.Copy(io.Discard, r)
	r.Close()
	if err == nil {
		err = <-done // the packer has written every entry
	}
	if err != nil {
		return 0, fmt.Errorf("tar-split of layer %s: %w", chain, err)
	}
	if err := zw.Close(); err != nil {
		return 0, fmt.Errorf("tar-split of layer %s: %w", chain, err)
	}
	if err := os.WriteFile(tarSplitPath(dir, chain), gz.Bytes(), 0o644); err != nil {
		return 0, err
	}
	return size, nil
}

// unpack extracts a layer tar into dir.
func unpack(dir string, layer []byte) (int64, error) {
	own := func(p string, h *tar.Header) error {
		if os.Getuid() != 0 {
			return nil // only root can give files away
		}
		return os.Lchown(p, h.Uid, h.Gid)
	}
	type dirMode struct {
		path string
		mode int64
	}
	var dirs []dirMode
	var size int64
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
		name := filepath.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return 0, fmt.Errorf("%s: path leaves the layer", h.Name)
		}
		if strings.HasPrefix(filepath.Base(name), ".wh.") {
			return 0, fmt.Errorf("%s: whiteouts are not supported", h.Name)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return 0, err
			}
			dirs = append(dirs, dirMode{p, h.Mode})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return 0, err
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return 0, fmt.Errorf("%s: %w", h.Name, err)
			}
			size += n
			// Owner first: chown clears the set-user-ID bit.
			if err := own(p, h); err != nil {
				return 0, err
			}
			if err := unix.Chmod(p, uint32(h.Mode&0o7777)); err != nil {
				return 0, fmt.Errorf("chmod %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return 0, err
			}
		case tar.TypeLink:
			target := filepath.Clean(h.Linkname)
			if !filepath.IsLocal(target) {
				return 0, fmt.Errorf("%s: hard link leaves the layer", h.Name)
			}
			if err := os.Link(filepath.Join(dir, target), p); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("%s: tar type %q is not supported", h.Name, h.Typeflag)
		}
		if h.Typeflag == tar.TypeDir || h.Typeflag == tar.TypeSymlink {
			if err := own(p, h); err != nil {
				return 0, err
			}
		}
	}
	// Modes of directories last: a read-only one would refuse its entries.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Chmod(dirs[i].path, uint32(dirs[i].mode&0o7777)); err != nil {
			return 0, fmt.Errorf("chmod %s: %w", dirs[i].path, err)
		}
	}
	return size, nil
}
