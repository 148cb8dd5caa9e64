package sysinit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/berthos/berth/internal/atomicfile"
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
	res, err := cli.ImageLoad(ctx, f, client.ImageLoadWithQuiet(true))
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
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == version {
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
	if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err != nil {
		return refs, fmt.Errorf("write image stamp: %w", err)
	}
	if err := atomicfile.Write(stamp, []byte(version+"\n"), 0o644); err != nil {
		return refs, fmt.Errorf("write image stamp: %w", err)
	}
	return refs, nil
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
