// Package imagestore is the OS's own images as a ready-made image store:
// each layer unpacked into a directory, with the tar-split record that
// lets Docker rebuild the layer's exact tar, and each image's config.
// The image build writes it into the system image (Write). At boot, before
// System Docker starts, Seed puts it into the engine's data root in the
// layout of dockerd's overlay2 driver, so that the images are there
// without a `docker load` (which unpacks every layer again, 5-7 s under
// TCG). For other storage drivers, WriteArchive streams the same images
// as a `docker save` archive to load.
//
// The layout Seed writes is dockerd's (20.10 and later): image/overlay2/
// {repositories.json, imagedb/content/sha256/ID, layerdb/sha256/CHAIN/
// {diff,size,cache-id,parent,tar-split.json.gz}} and overlay2/CACHE/{diff,
// link,lower,work} with overlay2/l/LINK -> ../CACHE/diff.
package imagestore

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DirName is the store's directory in an image directory (the system
// image's /usr/share/berth/images).
const DirName = "store"

// ManifestName is the store's index, at the top of its directory.
const ManifestName = "store.json"

// Manifest is the store's index: its images and their layers.
type Manifest struct {
	Images []Image `json:"images"`
	// Layers, each listed once, parents before their children.
	Layers []Layer `json:"layers"`
}

// Image is one image of the store.
type Image struct {
	// Refs are the image's tags, e.g. berth/base:v1.2.
	Refs []string `json:"refs"`
	// ID is the digest of its config, "sha256:HEX".
	ID string `json:"id"`
	// Chain is the chain ID of each of its layers, bottom first.
	Chain []string `json:"chain"`
}

// Layer is one unpacked layer of the store.
type Layer struct {
	// ChainID names the layer with everything under it, "sha256:HEX".
	ChainID string `json:"chain_id"`
	// DiffID is the digest of the layer's uncompressed tar.
	DiffID string `json:"diff_id"`
	// Parent is the chain ID of the layer under it ("" for a base layer).
	Parent string `json:"parent,omitempty"`
	// Size is the bytes of file content in the layer (what `docker
	// images` adds up).
	Size int64 `json:"size"`
	// TarSize is the length of the layer's tar.
	TarSize int64 `json:"tar_size"`
}

// Paths inside a store directory.
func configPath(dir, id string) string {
	return filepath.Join(dir, "images", hexOf(id)+".json")
}
func layerDir(dir, chainID string) string { return filepath.Join(dir, "layers", hexOf(chainID)) }
func diffDir(dir, chainID string) string  { return filepath.Join(layerDir(dir, chainID), "diff") }
func tarSplitPath(dir, chainID string) string {
	return filepath.Join(layerDir(dir, chainID), "tar-split.json.gz")
}

// hexOf is the hex part of a "sha256:HEX" digest.
func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }

// chainID is the chain ID of a layer with diffID on top of parent
// (the OCI image spec's ChainID).
func chainID(parent, diffID string) string {
	if parent == "" {
		return diffID
	}
	sum := sha256.Sum256([]byte(parent + " " + diffID))
	return fmt.Sprintf("sha256:%x", sum)
}

// linkID is the overlay2 driver's short name of a layer (a 26-letter
// symlink in overlay2/l that keeps mount options short). dockerd makes it
// random; the store derives it from the chain ID so a seed is the same
// every boot.
func linkID(chainID string) string {
	sum := sha256.Sum256([]byte("overlay2 link " + chainID))
	return base32.StdEncoding.EncodeToString(sum[:])[:26]
}

// Store is a store directory opened for seeding or streaming.
type Store struct {
	// Dir is the store's directory.
	Dir string
	// Manifest is its index.
	Manifest Manifest
	layers   map[string]Layer
}

// Open reads the store in dir. A dir without a store gives an error that
// matches os.ErrNotExist.
func Open(dir string) (*Store, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	s := &Store{Dir: dir, layers: map[string]Layer{}}
	if err := json.Unmarshal(b, &s.Manifest); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", filepath.Join(dir, ManifestName), err)
	}
	for _, l := range s.Manifest.Layers {
		if l.Parent != "" {
			if _, ok := s.layers[l.Parent]; !ok {
				return nil, fmt.Errorf("open image store %s: layer %s comes before its parent %s", dir, l.ChainID, l.Parent)
			}
		}
		s.layers[l.ChainID] = l
	}
	for _, img := range s.Manifest.Images {
		for _, c := range img.Chain {
			if _, ok := s.layers[c]; !ok {
				return nil, fmt.Errorf("open image store %s: image %s needs layer %s, which is not in it", dir, img.ID, c)
			}
		}
	}
	return s, nil
}

// Refs are the tags of every image in the store.
func (s *Store) Refs() []string {
	var out []string
	for _, img := range s.Manifest.Images {
		out = append(out, img.Refs...)
	}
	return out
}
