package cloudimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthos/berth/platforms/install"
	"golang.org/x/sys/unix"
)

// Image is one cloud image file.
type Image struct {
	Name     string // file name in the output directory
	Platform install.Platform
	Format   string // raw, qcow2, gce-tar, vmdk
}

// Images are the images Build makes, in order.
func Images() []Image {
	return []Image{
		{"berth-openstack.qcow2", install.OpenStack, "qcow2"},
		{"berth-gce.tar.gz", install.GCE, "gce-tar"},
		{"berth-ec2.raw", install.Amazon, "raw"},
		{"berth-ec2.vmdk", install.Amazon, "vmdk"},
	}
}

// Result is a built image and its size.
type Result struct {
	Path   string
	Bytes  int64 // apparent size
	OnDisk int64 // allocated blocks (raw images are sparse)
	Took   time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("%-24s %6.1f MiB (%6.1f MiB allocated) in %s", filepath.Base(r.Path), mib(r.Bytes), mib(r.OnDisk), r.Took.Round(time.Millisecond))
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// Builder builds cloud images.
type Builder struct {
	src         install.Sources
	out         string
	diskBytes   int64
	seed        string
	epoch       time.Time
	only        map[string]bool
	log         io.Writer
	installOpts []install.InstallOption
	extraArgs   string
}

// Option configures New.
type Option func(*Builder)

// WithOutDir sets the output directory (default out/cloud).
func WithOutDir(dir string) Option { return func(b *Builder) { b.out = dir } }

// WithDiskSize sets the disk size of every image (default 2 GiB, a whole
// number of GiB as GCE requires).
func WithDiskSize(n int64) Option { return func(b *Builder) { b.diskBytes = n } }

// WithSeed sets the seed of GUIDs and UUIDs (default "berth"); a build
// passes the commit.
func WithSeed(s string) Option { return func(b *Builder) { b.seed = s } }

// WithEpoch sets every timestamp (default the Unix epoch).
func WithEpoch(t time.Time) Option { return func(b *Builder) { b.epoch = t } }

// WithOnly limits the build to the named images.
func WithOnly(names ...string) Option {
	return func(b *Builder) {
		b.only = map[string]bool{}
		for _, n := range names {
			b.only[n] = true
		}
	}
}

// WithAppend adds kernel arguments to every image's command line.
func WithAppend(args string) Option { return func(b *Builder) { b.extraArgs = args } }

// WithLog makes the builder say what it does on w.
func WithLog(w io.Writer) Option { return func(b *Builder) { b.log = w } }

// WithInstallOptions passes options to install.Install.
func WithInstallOptions(o ...install.InstallOption) Option {
	return func(b *Builder) { b.installOpts = append(b.installOpts, o...) }
}

// New makes a builder for images of the kernel, initrd and system image
// in src.
func New(src install.Sources, opts ...Option) *Builder {
	b := &Builder{src: src, out: "out/cloud", diskBytes: 2 << 30, seed: "berth", epoch: time.Unix(0, 0), log: io.Discard}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Build makes every image (or those WithOnly names) in the output
// directory and returns them with their sizes.
func (b *Builder) Build(ctx context.Context) ([]Result, error) {
	if b.diskBytes%(1<<30) != 0 {
		return nil, fmt.Errorf("build images: disk size %d is not a whole number of GiB (GCE needs one)", b.diskBytes)
	}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return nil, fmt.Errorf("build images: %w", err)
	}
	tmp, err := os.MkdirTemp(b.out, ".build-")
	if err != nil {
		return nil, fmt.Errorf("build images: %w", err)
	}
	defer os.RemoveAll(tmp)
	raws := map[install.Platform]string{}
	var results []Result
	for _, img := range Images() {
		if b.only != nil && !b.only[img.Name] {
			continue
		}
		start := time.Now()
		raw, ok := raws[img.Platform]
		if !ok {
			raw = filepath.Join(tmp, string(img.Platform)+".raw")
			if err := b.installRaw(ctx, img.Platform, raw); err != nil {
				return results, fmt.Errorf("build %s: %w", img.Name, err)
			}
			raws[img.Platform] = raw
		}
		dst := filepath.Join(b.out, img.Name)
		fmt.Fprintf(b.log, "cloudimage: %s\n", img.Name)
		if err := b.convert(ctx, img, raw, dst, tmp); err != nil {
			return results, fmt.Errorf("build %s: %w", img.Name, err)
		}
		r, err := stat(dst)
		if err != nil {
			return results, fmt.Errorf("build %s: %w", img.Name, err)
		}
		r.Took = time.Since(start)
		results = append(results, r)
	}
	return results, nil
}

// installRaw installs Berth for platform p onto a new sparse file.
func (b *Builder) installRaw(ctx context.Context, p install.Platform, raw string) error {
	f, err := os.Create(raw)
	if err != nil {
		return err
	}
	if err := f.Truncate(b.diskBytes); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	plan, err := install.NewPlan(raw, b.diskBytes, install.WithPlatform(p), install.WithKernel(b.src.Kernel), install.WithInitrd(b.src.Initrd), install.WithSystemImage(b.src.SystemImage),
		install.WithSeed(b.seed+"/"+string(p)), install.WithEpoch(b.epoch), install.WithAppend(b.extraArgs))
	if err != nil {
		return err
	}
	return install.Install(ctx, plan, b.installOpts...)
}

func (b *Builder) convert(ctx context.Context, img Image, raw, dst, tmp string) error {
	part := dst + ".part"
	defer os.Remove(part)
	switch img.Format {
	case "raw":
		if err := sparseCopy(raw, part); err != nil {
			return err
		}
	case "qcow2":
		if err := run(ctx, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-c", raw, part); err != nil {
			return err
		}
	case "vmdk":
		if err := run(ctx, "qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, part); err != nil {
			return err
		}
		if err := fixVMDKCID(part, b.seed); err != nil {
			return err
		}
	case "gce-tar":
		// GCE imports a gzip'd GNU tar holding one sparse disk.raw.
		dir := filepath.Join(tmp, "gce")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		disk := filepath.Join(dir, "disk.raw")
		if err := sparseCopy(raw, disk); err != nil {
			return err
		}
		if err := os.Chtimes(disk, b.epoch, b.epoch); err != nil {
			return err
		}
		out, err := os.Create(part)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "sh", "-c", `tar --format=oldgnu -S -c --owner=0 --group=0 --numeric-owner --mtime=@"$1" -C "$2" disk.raw | gzip -n -6`, "sh",
			strconv.FormatInt(b.epoch.Unix(), 10), dir)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = out, &stderr
		err = cmd.Run()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("tar disk.raw: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		os.Remove(disk)
	default:
		return fmt.Errorf("unknown format %q", img.Format)
	}
	return os.Rename(part, dst)
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sparseCopy copies src to dst, leaving holes where src has them.
func sparseCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	size := st.Size()
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break // no more data: the rest is a hole
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = size
		}
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		off = hole
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	return out.Close()
}

func stat(p string) (Result, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return Result{}, fmt.Errorf("stat %s: %w", p, err)
	}
	return Result{Path: p, Bytes: st.Size, OnDisk: st.Blocks * 512}, nil
}

// fixVMDKCID replaces the random content ID qemu-img writes into a VMDK's
// descriptor with one derived from seed, for reproducible bytes. qemu-img
// prints the CID without leading zeros (one build in sixteen has seven
// digits), so the whole value is rewritten, and the NUL padding of the
// descriptor's sectors takes up the difference.
func fixVMDKCID(path, seed string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return fmt.Errorf("read VMDK descriptor: %w", err)
	}
	head = head[:n]
	i := bytes.Index(head, []byte("\nCID="))
	if i < 0 {
		return fmt.Errorf("VMDK descriptor of %s has no CID", path)
	}
	j := bytes.IndexByte(head[i+1:], '\n')
	k := bytes.IndexByte(head[i+1:], 0)
	if j < 0 || k < j {
		return fmt.Errorf("VMDK descriptor of %s: CID line not ended", path)
	}
	j, k = i+1+j, i+1+k
	cid := install.DeriveUUID(seed, "vmdk")[:8]
	text := append([]byte("\nCID="+cid), head[j:k]...)
	if len(text) > k-i && (i+len(text) > n || head[i+len(text)-1] != 0) {
		return fmt.Errorf("VMDK descriptor of %s: no room for an 8-digit CID", path)
	}
	// Old text shorter or longer than the new: pad what is left with NULs.
	for len(text) < k-i {
		text = append(text, 0)
	}
	if _, err := f.WriteAt(text, int64(i)); err != nil {
		return fmt.Errorf("write VMDK CID: %w", err)
	}
	return f.Close()
}
