package imagestore

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// entry is one tar entry of a test layer.
type entry struct {
	name, data, link string
	typ              byte
	mode             int64
}

func layerTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			ModTime: time.Unix(1, 0), Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testStore writes a store of two images that share their bottom layer;
// the second has one more layer.
func testStore(t *testing.T) (*Store, [][]byte) {
	t.Helper()
	base := layerTar(t,
		entry{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "bin/hello", typ: tar.TypeReg, mode: 0o755, data: "#!/bin/sh\necho hello\n"},
		entry{name: "bin/hi", typ: tar.TypeSymlink, link: "hello"},
		entry{name: "bin/hello2", typ: tar.TypeLink, link: "bin/hello"},
		entry{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/shadow", typ: tar.TypeReg, mode: 0o640, data: "root:*:1::::::\n"},
	)
	top := layerTar(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/motd", typ: tar.TypeReg, mode: 0o644, data: "welcome\n"},
	)
	dir := filepath.Join(t.TempDir(), "store")
	err := Write(dir, []Source{
		{Refs: []string{"berth/base:v1"}, Config: []byte(`{"config":{"Cmd":["sh"]}}`), Layers: [][]byte{base}},
		{Refs: []string{"berth/console:v1"}, Config: []byte(`{"config":{"Cmd":["login"]}}`), Layers: [][]byte{base, top}},
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, [][]byte{base, top}
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func TestWriteStoresSharedLayersOnce(t *testing.T) {
	s, layers := testStore(t)
	baseDiff, topDiff := digestOf(layers[0]), digestOf(layers[1])
	topChain := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(baseDiff+" "+topDiff)))
	want := []Layer{
		{ChainID: baseDiff, DiffID: baseDiff, Size: int64(len("#!/bin/sh\necho hello\n") + len("root:*:1::::::\n")), TarSize: int64(len(layers[0]))},
		{ChainID: topChain, DiffID: topDiff, Parent: baseDiff, Size: 8, TarSize: int64(len(layers[1]))},
	}
	if diff := cmp.Diff(want, s.Manifest.Layers); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
	if got := s.Manifest.Images[1].Chain; !cmp.Equal(got, []string{baseDiff, topChain}) {
		t.Errorf("console's chain = %v, want [%s %s]", got, baseDiff, topChain)
	}
	if got, want := s.Manifest.Images[0].ID, digestOf([]byte(`{"config":{"Cmd":["sh"]}}`)); got != want {
		t.Errorf("base's ID = %s, want the digest of its config %s", got, want)
	}
	if diff := cmp.Diff([]string{"berth/base:v1", "berth/console:v1"}, s.Refs()); diff != "" {
		t.Errorf("Refs (-want +got):\n%s", diff)
	}
	// The files are unpacked with their modes.
	d := diffDir(s.Dir, baseDiff)
	for name, mode := range map[string]fs.FileMode{"bin/hello": 0o755, "etc/shadow": 0o640, "tmp": fs.ModeDir | fs.ModeSticky | 0o777} {
		st, err := os.Lstat(filepath.Join(d, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode(), mode)
		}
	}
	if l, err := os.Readlink(filepath.Join(d, "bin/hi")); err != nil || l != "hello" {
		t.Errorf("bin/hi -> %q, %v; want hello", l, err)
	}
	a, _ := os.Stat(filepath.Join(d, "bin/hello"))
	b, _ := os.Stat(filepath.Join(d, "bin/hello2"))
	if !os.SameFile(a, b) {
		t.Errorf("bin/hello2 is not a hard link of bin/hello")
	}
}

func TestWriteRefusesWhatItCannotStore(t *testing.T) {
	for name, layer := range map[string]entry{
		"whiteout":      {name: "etc/.wh.motd", typ: tar.TypeReg},
		"device":        {name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		"escape":        {name: "../evil", typ: tar.TypeReg},
		"hard link out": {name: "x", typ: tar.TypeLink, link: "../../etc/passwd"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			err := Write(dir, []Source{{Refs: []string{"x:1"}, Config: []byte("{}"), Layers: [][]byte{layerTar(t, layer)}}})
			if err == nil || !strings.Contains(err.Error(), layer.name) {
				t.Errorf("Write of a layer with %s = %v, want an error naming %s", name, err, layer.name)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed Write left %s (%v)", dir, err)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSeedWritesDockerdsLayout(t *testing.T) {
	s, layers := testStore(t)
	for _, how := range []Placement{Link, Copy} {
		t.Run(how.String(), func(t *testing.T) {
			root := t.TempDir()
			d := dockerRoot(root)
			// A tag the data root had before stays.
			if err := os.MkdirAll(filepath.Dir(d.repositories()), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(d.repositories(), []byte(`{"Repositories":{"mine":{"mine:1":"sha256:aaaa"}}}`), 0o600); err != nil {
				t.Fatal(err)
			}
			refs, err := s.Seed(root, how)
			if err != nil {
				t.Fatalf("Seed: %v", err)
			}
			if diff := cmp.Diff(s.Refs(), refs); diff != "" {
				t.Errorf("Seed refs (-want +got):\n%s", diff)
			}
			base, top := s.Manifest.Layers[0], s.Manifest.Layers[1]
			rec := d.layerDB(hexOf(base.ChainID))
			if got := readFile(t, filepath.Join(rec, "diff")); got != digestOf(layers[0]) {
				t.Errorf("layerdb diff = %q, want %s", got, digestOf(layers[0]))
			}
			if got := readFile(t, filepath.Join(rec, "size")); got != fmt.Sprint(base.Size) {
				t.Errorf("layerdb size = %q, want %d", got, base.Size)
			}
			if got := readFile(t, filepath.Join(d.layerDB(hexOf(top.ChainID)), "parent")); got != base.ChainID {
				t.Errorf("top layer's parent = %q, want %s", got, base.ChainID)
			}
			cache := readFile(t, filepath.Join(rec, "cache-id"))
			link := readFile(t, filepath.Join(d.overlay(cache), "link"))
			// What a container's mount reaches through overlay2/l.
			if got := readFile(t, filepath.Join(d.overlay("l"), link, "bin", "hello")); !strings.Contains(got, "echo hello") {
				t.Errorf("l/%s/bin/hello = %q", link, got)
			}
			topCache := readFile(t, filepath.Join(d.layerDB(hexOf(top.ChainID)), "cache-id"))
			if got := readFile(t, filepath.Join(d.overlay(topCache), "lower")); got != "l/"+link {
				t.Errorf("top layer's lower = %q, want l/%s", got, link)
			}
			st, err := os.Lstat(filepath.Join(d.overlay(cache), "diff"))
			if err != nil {
				t.Fatal(err)
			}
			if isLink := st.Mode()&fs.ModeSymlink != 0; isLink != (how == Link) {
				t.Errorf("diff is a symlink: %v, want %v", isLink, how == Link)
			}
			if how == Copy {
				sh, err := os.Stat(filepath.Join(d.overlay(cache), "diff", "etc", "shadow"))
				if err != nil || sh.Mode() != 0o640 {
					t.Errorf("copied etc/shadow: %v, %v; want mode 0640", sh, err)
				}
			}
			if got := readFile(t, d.imageDB(hexOf(s.Manifest.Images[1].ID))); got != `{"config":{"Cmd":["login"]}}` {
				t.Errorf("imagedb content = %q", got)
			}
			var rf repositoriesFile
			if err := json.Unmarshal([]byte(readFile(t, d.repositories())), &rf); err != nil {
				t.Fatal(err)
			}
			want := map[string]map[string]string{
				"mine":          {"mine:1": "sha256:aaaa"},
				"berth/base":    {"berth/base:v1": s.Manifest.Images[0].ID},
				"berth/console": {"berth/console:v1": s.Manifest.Images[1].ID},
			}
			if diff := cmp.Diff(want, rf.Repositories); diff != "" {
				t.Errorf("repositories.json (-want +got):\n%s", diff)
			}
			// Seeding again finds everything in place.
			if refs, err := s.Seed(root, how); err != nil || refs != nil {
				t.Errorf("second Seed = %v, %v; want nothing to do", refs, err)
			}
		})
	}
}

func TestSeedFinishesAnInterruptedSeed(t *testing.T) {
	s, _ := testStore(t)
	root := t.TempDir()
	if _, err := s.Seed(root, Copy); err != nil {
		t.Fatal(err)
	}
	// Cut short after the files, before the layer's record.
	d := dockerRoot(root)
	top := s.Manifest.Layers[1]
	if err := os.RemoveAll(d.layerDB(hexOf(top.ChainID))); err != nil {
		t.Fatal(err)
	}
	refs, err := s.Seed(root, Copy)
	if err != nil || refs == nil {
		t.Fatalf("Seed after an interrupted one = %v, %v; want it to write the layer again", refs, err)
	}
	cache := readFile(t, filepath.Join(d.layerDB(hexOf(top.ChainID)), "cache-id"))
	if got := readFile(t, filepath.Join(d.overlay(cache), "diff", "etc", "motd")); got != "welcome\n" {
		t.Errorf("etc/motd = %q after the second seed", got)
	}
}

func TestWriteArchiveRebuildsTheLayers(t *testing.T) {
	s, layers := testStore(t)
	var buf bytes.Buffer
	if err := s.WriteArchive(&buf); err != nil {
		t.Fatalf("WriteArchive: %v", err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	var manifest []archiveEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 2 || !cmp.Equal(manifest[1].RepoTags, []string{"berth/console:v1"}) || len(manifest[1].Layers) != 2 {
		t.Fatalf("manifest = %+v, want two images, the second with two layers", manifest)
	}
	for i, name := range manifest[1].Layers {
		if got, want := digestOf(files[name]), digestOf(layers[i]); got != want {
			t.Errorf("%s has digest %s, want the original layer's %s", name, got, want)
		}
	}
	if got := string(files[manifest[0].Config]); got != `{"config":{"Cmd":["sh"]}}` {
		t.Errorf("config = %q", got)
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a dir without a store = %v, want ErrNotExist", err)
	}
	dir := t.TempDir()
	bad := `{"images":[{"refs":["x:1"],"id":"sha256:11","chain":["sha256:22"]}],"layers":[]}`
	if err := os.WriteFile(filepath.Join(dir, ManifestName), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "sha256:22") {
		t.Errorf("Open of an image without its layer = %v, want an error naming the layer", err)
	}
}

func TestPlacementFor(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if got, err := PlacementFor(filepath.Join(dir, "system-docker")); err != nil || got != Link {
		t.Errorf("PlacementFor(a dir on tmpfs) = %v, %v; want link", got, err)
	}
	disk := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(disk, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		t.Skipf("the test's temp dir is on tmpfs too (%v): no disk to compare with", err)
	}
	if got, err := PlacementFor(disk); err != nil || got != Copy {
		t.Errorf("PlacementFor(a dir on disk) = %v, %v; want copy", got, err)
	}
}
