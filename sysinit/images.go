package sysinit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/internal/atomicfile"
	"github.com/berthos/berth/internal/imagestore"
	"github.com/moby/moby/client"
)

// loadTarball loads one `docker save` tarball (plain or compressed) into
// the engine and returns the image references it reported.
func loadTarball(ctx context.Context, cli *client.Client, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load image %s: %w", path, err)
	}
	defer f.Close()
	return loadArchive(ctx, cli, f, path)
}

// loadArchive loads the `docker save` archive r (named path in errors).
func loadArchive(ctx context.Context, cli *client.Client, r io.Reader, path string) ([]string, error) {
	res, err := cli.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return nil, fmt.Errorf("load image %s: %w", path, err)
	}
	defer res.Close()
	var refs []string
	sc := bufio.NewScanner(res)
	for sc.Scan() {
		var m struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if m.Error != "" {
			return refs, fmt.Errorf("load image %s: %s", path, m.Error)
		}
		if r, ok := strings.CutPrefix(strings.TrimSpace(m.Stream), "Loaded image: "); ok {
			refs = append(refs, r)
		}
	}
	if err := sc.Err(); err != nil {
		return refs, fmt.Errorf("load image %s: %w", path, err)
	}
	return refs, nil
}

// tarballs lists the image tarballs in dir (*.tar, *.tar.gz, *.tgz,
// *.tar.xz, *.tar.zst), in name order. A missing dir is empty.
func tarballs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list images in %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		for _, suf := range []string{".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst"} {
			if strings.HasSuffix(n, suf) {
				out = append(out, filepath.Join(dir, n))
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// LoadOSImages loads the tarballs in dir once per version: stamp records
// the version that was loaded, so later boots of the same version skip
// the work. It returns the references loaded (nil when skipped).
func LoadOSImages(ctx context.Context, cli *client.Client, dir, version, stamp string) ([]string, error) {
	if stamped(stamp, version) {
		return nil, nil
	}
	files, err := tarballs(dir)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, f := range files {
		r, err := loadTarball(ctx, cli, f)
		if err != nil {
			return refs, err
		}
		refs = append(refs, r...)
	}
	return refs, writeStamp(stamp, version)
}

// LoadStore loads the images of an image store into the engine as one
// `docker save` archive, once per version like LoadOSImages: for a System
// Docker that cannot be seeded (a storage driver other than overlay2).
func LoadStore(ctx context.Context, cli *client.Client, st *imagestore.Store, version, stamp string) ([]string, error) {
	if stamped(stamp, version) {
		return nil, nil
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(st.WriteArchive(pw)) }()
	refs, err := loadArchive(ctx, cli, pr, st.Dir)
	pr.Close()
	if err != nil {
		return refs, err
	}
	return refs, writeStamp(stamp, version)
}

// stamped reports whether stamp records version.
func stamped(stamp, version string) bool {
	b, err := os.ReadFile(stamp)
	return err == nil && strings.TrimSpace(string(b)) == version
}

func writeStamp(stamp, version string) error {
	if err := atomicfile.Write(stamp, []byte(version+"\n"), 0o644); err != nil {
		return fmt.Errorf("write image stamp: %w", err)
	}
	return nil
}

// seedOSImages puts the OS's images into System Docker's data root before
// dockerd starts, from the image store in the image dir, and reports
// whether they are in place. The store is nil when the dir has none (its
// tarballs are then loaded); a store that is not in place (another storage
// driver, or a seed that failed, logged) is loaded instead.
func (e *Engines) seedOSImages(eng cloudinit.Engine) (*imagestore.Store, bool) {
	t0 := time.Now()
	log := e.o.log
	st, err := imagestore.Open(filepath.Join(e.o.imageDir, imagestore.DirName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		log.Error("OS images", "err", err)
		return nil, false
	}
	if eng.StorageDriver != "overlay2" {
		log.Info("System Docker's storage driver is not overlay2: the OS images will be loaded", "storage_driver", eng.StorageDriver)
		return st, false
	}
	how, err := imagestore.PlacementFor(eng.DataRoot)
	if err == nil {
		var refs []string
		refs, err = st.Seed(eng.DataRoot, how)
		if err == nil && refs != nil {
			log.Info("OS images seeded", "images", refs, "files", how.String(), "after", time.Since(t0).Round(time.Millisecond))
		}
	}
	if err != nil {
		log.Error("seed OS images; they will be loaded", "data_root", eng.DataRoot, "err", err)
		return st, false
	}
	return st, true
}

// LoadPreload loads user-supplied tarballs from dir (e.g.
// /var/lib/rancher/preload/system-docker). Each file is loaded again only
// when its size or modification time changed, recorded in dir/.loaded.
func LoadPreload(ctx context.Context, cli *client.Client, dir string) ([]string, error) {
	files, err := tarballs(dir)
	if err != nil || len(files) == 0 {
		return nil, err
	}
	record := filepath.Join(dir, ".loaded")
	seen := map[string]string{}
	if b, err := os.ReadFile(record); err == nil {
		_ = json.Unmarshal(b, &seen)
	}
	var refs []string
	var errs []error
	changed := false
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key := fmt.Sprintf("%d-%d", st.Size(), st.ModTime().UnixNano())
		if seen[filepath.Base(f)] == key {
			continue
		}
		r, err := loadTarball(ctx, cli, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		refs = append(refs, r...)
		seen[filepath.Base(f)] = key
		changed = true
	}
	if changed {
		b, _ := json.Marshal(seen)
		if err := atomicfile.Write(record, b, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("record preloaded images: %w", err))
		}
	}
	return refs, errors.Join(errs...)
}
