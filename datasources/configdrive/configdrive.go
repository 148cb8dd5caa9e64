// Package configdrive reads an OpenStack config drive (a filesystem
// labelled config-2, ISO9660 or FAT) straight from the block device with
// go-diskfs, without mounting it.
package configdrive

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/berthos/berth/datasources/openstack"
	"github.com/berthos/berth/datasources/source"
)

// Label is the config drive's filesystem label (matched in any case).
const Label = "config-2"

// Source reads a config drive.
type Source struct {
	root   string
	device string // empty: scan every block device
}

// Option configures a Source.
type Option func(*Source)

// WithRoot reads /sys and /dev under dir (default "/").
func WithRoot(dir string) Option { return func(s *Source) { s.root = dir } }

// WithDevice reads only this device (a path on the machine, "/dev/sr0").
func WithDevice(dev string) Option { return func(s *Source) { s.device = dev } }

// New returns the configdrive source.
func New(opts ...Option) *Source {
	s := &Source{root: "/"}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name is "configdrive" or "configdrive:<device>".
func (s *Source) Name() string {
	if s.device != "" {
		return "configdrive:" + s.device
	}
	return "configdrive"
}

// Needs is Local.
func (s *Source) Needs() source.Needs { return source.Local }

// Device is a block device and what Probe found on it.
type Device struct {
	Path   string // on the machine: /dev/sr0
	FSType string
	Label  string
}

// Scan lists block devices under root (from /sys/class/block) with their
// filesystem type and label; devices without a recognised filesystem are
// left out.
func Scan(root string) []Device {
	ents, err := os.ReadDir(filepath.Join(root, "sys/class/block"))
	if err != nil {
		return nil
	}
	var out []Device
	for _, e := range ents {
		p := "/dev/" + e.Name()
		t, l, err := probeFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		out = append(out, Device{Path: p, FSType: t, Label: l})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func probeFile(p string) (string, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	return Probe(f)
}

// Fetch finds the drive and reads it.
func (s *Source) Fetch(ctx context.Context) (*source.Result, error) {
	dev := s.device
	if dev == "" {
		for _, d := range Scan(s.root) {
			if strings.EqualFold(d.Label, Label) {
				dev = d.Path
				break
			}
		}
		if dev == "" {
			return nil, fmt.Errorf("configdrive: no block device labelled %s: %w", Label, source.ErrNotFound)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("configdrive %s: %w: %w", dev, source.ErrTimeout, err)
	}
	f, err := os.Open(filepath.Join(s.root, dev))
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, fmt.Errorf("configdrive %s: %w: %w", dev, source.ErrNotFound, err)
		}
		return nil, fmt.Errorf("configdrive %s: %w", dev, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("configdrive %s: size: %w", dev, err)
	}
	r, err := Read(f, size)
	if err != nil {
		return nil, fmt.Errorf("configdrive %s: %w", dev, err)
	}
	return r, nil
}

// Read reads a config drive image of the given size.
func Read(r io.ReaderAt, size int64) (res *source.Result, err error) {
	// go-diskfs trusts on-disk offsets; a corrupt image must not bring
	// the boot down.
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("read config drive: corrupt filesystem: %v", p)
		}
	}()
	fsys, err := Open(r, size)
	if err != nil {
		return nil, err
	}
	return readLayout(fsys)
}

// FS is the read side of a go-diskfs filesystem.
type FS interface {
	Open(name string) (iofs.File, error)
	Label() string
}

// readFile reads p ("/openstack/latest/user_data") from fsys. The readers
// disagree on paths (ISO9660 wants io/fs paths without the leading slash,
// FAT takes either), and the FAT12/16 reader returns whole clusters, so
// the content is cut to the size the directory entry gives.
func readFile(fsys FS, p string) ([]byte, error) {
	f, err := fsys.Open(strings.TrimPrefix(p, "/"))
	if err != nil && errors.Is(err, iofs.ErrInvalid) {
		f, err = fsys.Open(p)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", p)
	}
	const max = 64 << 20
	if st.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than a config drive file may hold", p, st.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, st.Size()))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != st.Size() {
		return nil, fmt.Errorf("%s: read %d of %d bytes: %w", p, len(b), st.Size(), io.ErrUnexpectedEOF)
	}
	return b, nil
}

// Open opens the ISO9660 or FAT filesystem of an image.
func Open(r io.ReaderAt, size int64) (FS, error) {
	t, _, err := Probe(r)
	if err != nil {
		return nil, fmt.Errorf("read config drive: %w", err)
	}
	if t != ISO9660 {
		if err := checkFAT(r, size, t); err != nil {
			return nil, fmt.Errorf("read config drive: %w", err)
		}
		if err := checkFATChains(r, t); err != nil {
			return nil, fmt.Errorf("read config drive: %w", err)
		}
	}
	b := &readerBackend{r: r, size: size}
	var fsys FS
	switch t {
	case ISO9660:
		if err := checkISO(r, size); err != nil {
			return nil, fmt.Errorf("read config drive: %w", err)
		}
		fsys, err = iso9660.Read(b, 0, 0, 2048)
	case FAT12:
		fsys, err = fat12.Read(b, size, 0, 512)
	case FAT16:
		fsys, err = fat16.Read(b, size, 0, 512)
	case FAT32:
		fsys, err = fat32.Read(b, size, 0, 512)
	}
	if err != nil {
		return nil, fmt.Errorf("read config drive (%s): %w", t, err)
	}
	return fsys, nil
}

// readLayout reads the OpenStack layout: openstack/latest/{meta_data.json,
// user_data,network_data.json}, EC2-style addresses from
// ec2/latest/meta-data.json, and the injected files of openstack/content/.
func readLayout(fsys FS) (*source.Result, error) {
	read := func(p string) ([]byte, bool, error) {
		b, err := readFile(fsys, p)
		if err != nil {
			if isNotExist(err) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("read %s: %w", p, err)
		}
		return b, true, nil
	}
	mdRaw, ok, err := read("/openstack/latest/meta_data.json")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no /openstack/latest/meta_data.json: %w", source.ErrNotFound)
	}
	md, meta, err := openstack.ParseMetaData(mdRaw)
	if err != nil {
		return nil, err
	}
	res := &source.Result{Meta: meta}
	if res.UserData, _, err = read("/openstack/latest/user_data"); err != nil {
		return nil, err
	}
	nd, ok, err := read("/openstack/latest/network_data.json")
	if err != nil {
		return nil, err
	}
	if ok {
		if res.Network, err = openstack.ParseNetworkData(nd); err != nil {
			return nil, err
		}
	}
	ec2, ok, err := read("/ec2/latest/meta-data.json")
	if err != nil {
		return nil, err
	}
	if ok {
		if err := mergeEC2(&res.Meta, ec2); err != nil {
			return nil, err
		}
	}
	for _, f := range md.Files {
		cp := path.Clean("/" + f.ContentPath)
		b, ok, err := read("/openstack" + cp)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("injected file %s: /openstack%s: %w", f.Path, cp, iofs.ErrNotExist)
		}
		if res.Files == nil {
			res.Files = map[string][]byte{}
		}
		res.Files[path.Clean("/"+f.Path)] = b
	}
	return res, nil
}

func isNotExist(err error) bool {
	if errors.Is(err, iofs.ErrNotExist) {
		return true
	}
	// go-diskfs's readers do not all wrap fs.ErrNotExist.
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "not found") || strings.Contains(s, "does not exist") || strings.Contains(s, "no such file") ||
		strings.Contains(s, "could not find") // iso9660: "could not find directory ec2/latest"
}

// readerBackend adapts an io.ReaderAt to go-diskfs's read-only storage.
type readerBackend struct {
	r    io.ReaderAt
	size int64
	off  int64
}

var _ backend.Storage = (*readerBackend)(nil)

func (b *readerBackend) ReadAt(p []byte, off int64) (int, error) { return b.r.ReadAt(p, off) }
func (b *readerBackend) Read(p []byte) (int, error) {
	n, err := b.r.ReadAt(p, b.off)
	b.off += int64(n)
	return n, err
}
func (b *readerBackend) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += b.off
	case io.SeekEnd:
		off += b.size
	}
	if off < 0 {
		return 0, errors.New("seek before start")
	}
	b.off = off
	return off, nil
}
func (b *readerBackend) Close() error                 { return nil }
func (b *readerBackend) Stat() (iofs.FileInfo, error) { return imageInfo{b.size}, nil }
func (b *readerBackend) Sys() (*os.File, error)       { return nil, backend.ErrNotSuitable }
func (b *readerBackend) Writable() (backend.WritableFile, error) {
	return nil, backend.ErrIncorrectOpenMode
}
func (b *readerBackend) Path() string { return "" }

type imageInfo struct{ size int64 }

func (i imageInfo) Name() string        { return "config-drive" }
func (i imageInfo) Size() int64         { return i.size }
func (i imageInfo) Mode() iofs.FileMode { return 0o444 }
func (i imageInfo) ModTime() time.Time  { return time.Time{} }
func (i imageInfo) IsDir() bool         { return false }
func (i imageInfo) Sys() any            { return nil }
