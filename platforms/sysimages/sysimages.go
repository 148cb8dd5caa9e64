// Package sysimages builds the OS's own container images (base, console,
// docker) at build time, without a Docker daemon or a registry: the three
// share one layer (busybox, ros, the console's dropbear, the engine's
// libraries and iptables) and differ in their config. They are written
// twice: as one `docker save` tarball, and as the image store (package
// imagestore) the system image carries, which PID 1 seeds into System
// Docker's data root before it starts.
package sysimages

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berthos/berth/internal/imagestore"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Repository names of the OS's images; the tag is the Berth version.
const (
	Base    = "berth/base"
	Console = "berth/console"
	Docker  = "berth/docker"
)

// Names returns the repository names Build writes, in build order.
func Names() []string { return []string{Base, Console, Docker} }

// Ref returns the image reference of repository repo at version.
func Ref(repo, version string) string { return repo + ":" + Tag(version) }

// Tag turns a version (which may be a git describe string) into a valid
// image tag.
func Tag(version string) string {
	var b strings.Builder
	for _, r := range version {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "dev"
	}
	return b.String()
}

// TarballName is the file Build writes: every image in one `docker save`
// tarball, so that the layer they share (busybox and ros) is in it, and
// loaded, once.
const TarballName = "berth-images.tar"

// StoreName is the directory Build writes the same images into as an
// image store (package imagestore): what the system image carries, so
// that System Docker starts with them instead of loading the tarball.
const StoreName = imagestore.DirName

type options struct {
	version    string
	ros        string
	busybox    string
	dropbear   string
	only       map[string]bool
	modTime    time.Time
	extraFiles map[string][]File
}

// Option configures Build.
type Option func(*options)

// WithVersion sets the tag (default "dev").
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithRos sets the path of the static ros binary put in every image
// (required).
func WithRos(path string) Option { return func(o *options) { o.ros = path } }

// WithBusybox sets the static busybox binary (default /bin/busybox, Debian's
// busybox-static).
func WithBusybox(path string) Option { return func(o *options) { o.busybox = path } }

// WithDropbear sets the dropbear server binary of the console image (default
// /usr/sbin/dropbear); its shared libraries are found with ldd.
func WithDropbear(path string) Option { return func(o *options) { o.dropbear = path } }

// WithOnly builds only the named repositories.
func WithOnly(repos ...string) Option {
	return func(o *options) {
		o.only = map[string]bool{}
		for _, r := range repos {
			o.only[r] = true
		}
	}
}

// WithFiles adds files to the image of repository repo (tests use it).
func WithFiles(repo string, files ...File) Option {
	return func(o *options) { o.extraFiles[repo] = append(o.extraFiles[repo], files...) }
}

// File is one entry of an image's filesystem: a regular file copied from
// Source or holding Data, a directory, or a symlink to Link.
type File struct {
	Path   string // absolute path in the image
	Source string // host file to copy
	Data   []byte // content when Source is empty
	Link   string // symlink target
	Dir    bool
	Mode   int64
}

// Image is one tarball Build wrote.
type Image struct {
	Ref  string // berth/base:VERSION
	Path string // the docker-save tarball
	Size int64
}

// Build writes the OS's images into outDir, as one tarball and as the
// image store in outDir/store, and returns them.
func Build(ctx context.Context, outDir string, opts ...Option) ([]Image, error) {
	o := options{
		version:    "dev",
		busybox:    "/bin/busybox",
		dropbear:   "/usr/sbin/dropbear",
		modTime:    time.Unix(0, 0),
		extraFiles: map[string][]File{},
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.ros == "" {
		return nil, errors.New("build images: the ros binary is required (WithRos)")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("build images: %w", err)
	}
	// One layer for every image: System Docker unpacks each layer of a
	// `docker load` in a re-executed dockerd, which costs 1.5-2 s under
	// TCG, so one shared layer is what the first boot waits for once. The
	// images differ only in their config (and in WithFiles layers).
	var repos []string
	for _, repo := range Names() {
		if o.only == nil || o.only[repo] {
			repos = append(repos, repo)
		}
	}
	files, err := baseFiles(ctx, &o)
	if err != nil {
		return nil, err
	}
	for _, repo := range repos {
		var more []File
		switch repo {
		case Console:
			more, err = consoleFiles(ctx, &o)
		case Docker:
			more, err = dockerFiles(ctx, &o)
		}
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	shared, err := layerOf(files, o.modTime)
	if err != nil {
		return nil, fmt.Errorf("build images: shared layer: %w", err)
	}
	imgs := map[string]v1.Image{}
	var refs []string
	for _, repo := range repos {
		cfg := v1.Config{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:        []string{"/bin/sh"},
			WorkingDir: "/",
			Labels:     map[string]string{"io.berth.version": o.version},
		}
		if repo == Docker {
			cfg.Cmd = []string{"/usr/bin/dockerd"}
		}
		ref := Ref(repo, o.version)
		layers := []v1.Layer{shared}
		if extra := o.extraFiles[repo]; len(extra) > 0 {
			l, err := layerOf(extra, o.modTime)
			if err != nil {
				return nil, fmt.Errorf("build %s: %w", ref, err)
			}
			layers = append(layers, l)
		}
		img, err := imageOf(layers, cfg, o.modTime)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", ref, err)
		}
		imgs[ref] = img
		refs = append(refs, ref)
	}
	path := filepath.Join(outDir, TarballName)
	if err := writeTarball(path, imgs); err != nil {
		return nil, err
	}
	if err := writeStore(filepath.Join(outDir, StoreName), refs, imgs); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("build images: %w", err)
	}
	var out []Image
	for _, ref := range refs {
		out = append(out, Image{Ref: ref, Path: path, Size: st.Size()})
	}
	return out, nil
}

// writeStore writes the images, in refs order, as the image store PID 1
// seeds System Docker's data root from.
func writeStore(dir string, refs []string, imgs map[string]v1.Image) error {
	var srcs []imagestore.Source
	for _, ref := range refs {
		img := imgs[ref]
		cfg, err := img.RawConfigFile()
		if err != nil {
			return fmt.Errorf("build image store: %s: %w", ref, err)
		}
		src := imagestore.Source{Refs: []string{ref}, Config: cfg}
		layers, err := img.Layers()
		if err != nil {
			return fmt.Errorf("build image store: %s: %w", ref, err)
		}
		for _, l := range layers {
			rc, err := l.Uncompressed()
			if err != nil {
				return fmt.Errorf("build image store: %s: %w", ref, err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return fmt.Errorf("build image store: %s: %w", ref, err)
			}
			src.Layers = append(src.Layers, b)
		}
		srcs = append(srcs, src)
	}
	return imagestore.Write(dir, srcs)
}

// layerOf makes an uncompressed layer of files. The system image that
// carries the tarball is compressed already, and an uncompressed layer
// spares the machine a gunzip at every first boot.
func layerOf(files []File, mtime time.Time) (v1.Layer, error) {
	b, err := tarFiles(files, mtime)
	if err != nil {
		return nil, err
	}
	return static.NewLayer(b, types.DockerLayer), nil
}

// imageOf stacks layers into an amd64 Linux image with config cfg.
func imageOf(layers []v1.Layer, cfg v1.Config, mtime time.Time) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Config = cfg
	cf.Created = v1.Time{Time: mtime}
	return mutate.ConfigFile(img, cf)
}

// writeTarball writes images by reference as one `docker save` tarball at
// path, atomically; layers two images share are in it once.
func writeTarball(path string, imgs map[string]v1.Image) error {
	m := map[name.Reference]v1.Image{}
	for ref, img := range imgs {
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		m[tag] = img
	}
	tmp := path + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, m); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteImage writes a one-layer image of files, tagged ref, as a `docker
// save` tarball at path (atomically), with every time set to mtime so the
// same inputs give the same bytes. Tests use it for images of their own
// (a busybox for User Docker).
func WriteImage(path, ref string, files []File, cfg v1.Config, mtime time.Time) error {
	l, err := layerOf(files, mtime)
	if err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	img, err := imageOf([]v1.Layer{l}, cfg, mtime)
	if err != nil {
		return fmt.Errorf("build %s: %w", ref, err)
	}
	return writeTarball(path, map[string]v1.Image{ref: img})
}

// tarFiles writes files as one layer tar, parents first, with fixed times
// so a rebuild of the same inputs gives the same image ID.
func tarFiles(files []File, mtime time.Time) ([]byte, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := strings.TrimPrefix(filepath.Clean(f.Path), "/")
		for d := filepath.Dir(p); d != "." && d != "/"; d = filepath.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = File{Path: d, Dir: true, Mode: 0o755}
			}
		}
		f.Path = p
		byPath[p] = f
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := byPath[p]
		h := &tar.Header{Name: p, ModTime: mtime, Mode: f.Mode, Format: tar.FormatPAX}
		var data []byte
		switch {
		case f.Dir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag = tar.TypeSymlink
			h.Linkname = f.Link
			h.Mode = 0o777
		default:
			h.Typeflag = tar.TypeReg
			data = f.Data
			if f.Source != "" {
				b, err := os.ReadFile(f.Source)
				if err != nil {
					return nil, fmt.Errorf("read %s: %w", f.Source, err)
				}
				data = b
				if h.Mode == 0 {
					st, err := os.Stat(f.Source)
					if err != nil {
						return nil, err
					}
					h.Mode = int64(st.Mode().Perm())
				}
			}
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", p, err)
		}
		if data != nil {
			if _, err := tw.Write(data); err != nil {
				return nil, fmt.Errorf("tar %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rosNames are the argv[0] names the ros binary answers to inside the
// images.
func rosNames() []string {
	return []string{"netconf", "cloud-init-execute", "respawn", "system-docker", "modprobe", "ntpd"}
}

func baseFiles(ctx context.Context, o *options) ([]File, error) {
	if err := requireStatic(o.busybox); err != nil {
		return nil, fmt.Errorf("build images: busybox: %w", err)
	}
	out, err := exec.CommandContext(ctx, o.busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("build images: %s --list-full: %w", o.busybox, err)
	}
	files := []File{
		{Path: "/bin/busybox", Source: o.busybox, Mode: 0o755},
		{Path: "/usr/bin/ros", Source: o.ros, Mode: 0o755},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nrancher:x:1100:1100:rancher:/home/rancher:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nwheel:x:10:rancher\ndocker:x:1101:rancher\nrancher:x:1100:\nnogroup:x:65534:\n")},
		{Path: "/etc/shadow", Data: []byte("root:*:1::::::\nrancher:*:1::::::\n"), Mode: 0o640},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/root", Dir: true, Mode: 0o700},
		{Path: "/proc", Dir: true}, {Path: "/sys", Dir: true}, {Path: "/dev", Dir: true},
		{Path: "/run", Dir: true}, {Path: "/var/run", Link: "/run"},
		{Path: "/var/log", Dir: true},
	}
	for _, n := range strings.Fields(string(out)) {
		p := "/" + strings.TrimPrefix(n, "/")
		if p == "/bin/busybox" {
			continue
		}
		files = append(files, File{Path: p, Link: "/bin/busybox"})
	}
	for _, n := range rosNames() {
		files = append(files, File{Path: "/usr/bin/" + n, Link: "ros"})
	}
	return files, nil
}

func consoleFiles(ctx context.Context, o *options) ([]File, error) {
	files := []File{
		{Path: "/usr/sbin/dropbear", Source: o.dropbear, Mode: 0o755},
		{Path: "/etc/dropbear", Dir: true, Mode: 0o700},
		{Path: "/home/rancher", Dir: true, Mode: 0o755},
	}
	libs, err := sharedLibs(ctx, o.dropbear)
	if err != nil {
		return nil, fmt.Errorf("build console image: %w", err)
	}
	return append(files, libs...), nil
}

// dockerBinaries are bind-mounted read-only from the OS at run time; the
// image carries only the libraries they link against.
func dockerBinaries() []string {
	return []string{"/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/sbin/runc", "/usr/sbin/docker-proxy", "/usr/bin/docker-init"}
}

func dockerFiles(ctx context.Context, o *options) ([]File, error) {
	var files []File
	seen := map[string]bool{}
	for _, b := range dockerBinaries() {
		if _, err := os.Stat(b); err != nil {
			continue // a machine without docker.io builds an engine image that lacks its libraries
		}
		libs, err := sharedLibs(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("build docker image: %w", err)
		}
		for _, l := range libs {
			if !seen[l.Path] {
				seen[l.Path] = true
				files = append(files, l)
			}
		}
	}
	// iptables (nft backend) from the build host's Debian, for the user
	// engine's NAT and published ports. Its extensions are dlopen()ed, so
	// ldd does not list them.
	if _, err := os.Stat(xtablesMulti); err == nil {
		files = append(files, File{Path: xtablesMulti, Source: xtablesMulti, Mode: 0o755})
		for _, n := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
			files = append(files, File{Path: "/usr/sbin/" + n, Link: "xtables-nft-multi"})
		}
		libs, err := sharedLibs(ctx, xtablesMulti)
		if err != nil {
			return nil, fmt.Errorf("build docker image: %w", err)
		}
		for _, l := range libs {
			if !seen[l.Path] {
				seen[l.Path] = true
				files = append(files, l)
			}
		}
		exts, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
		for _, e := range exts {
			files = append(files, File{Path: e, Source: e, Mode: 0o644})
		}
	}
	for _, p := range []string{"/var/lib/docker", "/etc/docker"} {
		files = append(files, File{Path: p, Dir: true, Mode: 0o711})
	}
	return files, nil
}

const xtablesMulti = "/usr/sbin/xtables-nft-multi"

// sharedLibs returns the shared libraries bin needs (ldd), each at the path
// the dynamic loader looks for.
func sharedLibs(ctx context.Context, bin string) ([]File, error) {
	if requireStatic(bin) == nil {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var files []File
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		var lib string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			lib = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			lib = f[0]
		default:
			continue
		}
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, fmt.Errorf("library of %s: %w", bin, err)
		}
		files = append(files, File{Path: lib, Source: real, Mode: 0o755})
	}
	return files, nil
}

func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; install busybox-static", path)
		}
	}
	return nil
}
