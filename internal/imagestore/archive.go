package imagestore

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

// archiveEntry is one image in a `docker save` archive's manifest.json.
type archiveEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// WriteArchive writes the store's images to w as one `docker save`
// archive (manifest.json, the configs, each layer's tar once), for an
// engine that cannot be seeded. Each layer's tar is rebuilt byte for byte
// from its files and its tar-split record, so it has the digest the
// image's config names.
func (s *Store) WriteArchive(w io.Writer) error {
	tw := tar.NewWriter(w)
	var manifest []archiveEntry
	for _, img := range s.Manifest.Images {
		e := archiveEntry{Config: hexOf(img.ID) + ".json", RepoTags: img.Refs}
		for _, c := range img.Chain {
			e.Layers = append(e.Layers, hexOf(c)+"/layer.tar")
		}
		manifest = append(manifest, e)
	}
	mb, err := json.Marshal(manifest)
	if err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	if err := writeEntry(tw, "manifest.json", mb); err != nil {
		return err
	}
	for _, img := range s.Manifest.Images {
		b, err := os.ReadFile(configPath(s.Dir, img.ID))
		if err != nil {
			return fmt.Errorf("write image archive: %w", err)
		}
		if err := writeEntry(tw, hexOf(img.ID)+".json", b); err != nil {
			return err
		}
	}
	for _, l := range s.Manifest.Layers {
		if err := s.writeLayerTar(tw, l); err != nil {
			return fmt.Errorf("write image archive: layer %s: %w", l.ChainID, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write image archive: %w", err)
	}
	return nil
}

func writeEntry(tw *tar.Writer, name string, b []byte) error {
	h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write image archive: %s: %w", name, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("write image archive: %s: %w", name, err)
	}
	return nil
}

// writeLayerTar adds layer l's tar, rebuilt from the store, to tw.
func (s *Store) writeLayerTar(tw *tar.Writer, l Layer) error {
	f, err := os.Open(tarSplitPath(s.Dir, l.ChainID))
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: hexOf(l.ChainID) + "/layer.tar", Mode: 0o644, Size: l.TarSize, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	r := asm.NewOutputTarStream(storage.NewPathFileGetter(diffDir(s.Dir, l.ChainID)), storage.NewJSONUnpacker(zr))
	defer r.Close()
	if _, err := io.Copy(tw, r); err != nil {
		return err
	}
	return nil
}
