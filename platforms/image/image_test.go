package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/google/go-cmp/cmp"
)

func TestParseModinfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		aliases []string
	}{
		{"depends", "license=GPL\x00depends=net_failover,failover\x00name=virtio_net\x00", []string{"net_failover", "failover"}, nil},
		{"softdep pre only", "depends=\x00softdep=pre: crc32c post: foo-bar\x00", []string{"crc32c"}, nil},
		{"dash normalised", "depends=virtio-rng\x00", []string{"virtio_rng"}, nil},
		{"none", "name=loop\x00", nil, nil},
		{"aliases", "alias=fs-vfat\x00alias=vfat\x00depends=fat\x00alias=\x00", []string{"fat"}, []string{"fs-vfat", "vfat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deps, aliases := parseModinfo([]byte(tt.in))
			if diff := cmp.Diff(tt.want, deps); diff != "" {
				t.Errorf("parseModinfo(%q) deps (-want +got):\n%s", tt.in, diff)
			}
			if diff := cmp.Diff(tt.aliases, aliases); diff != "" {
				t.Errorf("parseModinfo(%q) aliases (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestModulesAlias(t *testing.T) {
	mods := []Module{
		{Name: "vfat", Aliases: []string{"fs-vfat", "vfat"}},
		{Name: "bridge", Aliases: []string{"rtnl-link-bridge"}},
		{Name: "loop"},
	}
	want := "alias fs-vfat vfat\nalias rtnl-link-bridge bridge\nalias vfat vfat\n"
	if got := string(ModulesAlias(mods)); got != want {
		t.Errorf("ModulesAlias = %q, want %q", got, want)
	}
}

func TestExpandDirs(t *testing.T) {
	mods := map[string]Module{
		"nf_tables":   {Name: "nf_tables", Path: "kernel/net/netfilter/nf_tables.ko"},
		"xt_nat":      {Name: "xt_nat", Path: "kernel/net/netfilter/xt_nat.ko"},
		"ip_vs":       {Name: "ip_vs", Path: "kernel/net/netfilter/ipvs/ip_vs.ko"},
		"nf_nat_ipv4": {Name: "iptable_nat", Path: "kernel/net/ipv4/netfilter/iptable_nat.ko"},
	}
	got := expandDirs(mods, []string{"loop", "kernel/net/netfilter/"})
	want := []string{"loop", "ip_vs", "nf_tables", "xt_nat"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expandDirs (-want +got):\n%s", diff)
	}
}

func TestModulesDep(t *testing.T) {
	mods := []Module{
		{Name: "failover", Path: "kernel/net/core/failover.ko"},
		{Name: "virtio_net", Path: "kernel/drivers/net/virtio_net.ko", Deps: []string{"failover", "builtin_thing"}},
	}
	want := "kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko\nkernel/net/core/failover.ko:\n"
	if got := string(ModulesDep(mods)); got != want {
		t.Errorf("ModulesDep = %q, want %q", got, want)
	}
}

func TestWriteCPIO(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin/ros"), []byte("#!ros"), 0o755)
	os.Symlink("bin/ros", filepath.Join(dir, "init"))
	os.Mkdir(filepath.Join(dir, "tmp"), 0o755)
	os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky)
	mtime := time.Unix(1700000000, 0)
	var a, b bytes.Buffer
	if err := WriteCPIO(&a, dir, mtime); err != nil {
		t.Fatal(err)
	}
	// A second run after touching the files gives the same bytes.
	now := time.Now()
	os.Chtimes(filepath.Join(dir, "bin/ros"), now, now)
	if err := WriteCPIO(&b, dir, mtime); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("WriteCPIO is not reproducible: two runs differ")
	}
	type entry struct {
		Name, Link, Body string
		Mode             cpio.FileMode
		Mtime            int64
	}
	var got []entry
	r := cpio.NewReader(&a)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		got = append(got, entry{h.Name, h.Linkname, string(body), h.Mode, h.ModTime.Unix()})
	}
	want := []entry{
		{Name: "bin", Mode: cpio.TypeDir | 0o755, Mtime: mtime.Unix()},
		{Name: "bin/ros", Body: "#!ros", Mode: cpio.TypeReg | 0o755, Mtime: mtime.Unix()},
		{Name: "init", Link: "bin/ros", Mode: cpio.TypeSymlink | 0o777, Mtime: mtime.Unix()},
		{Name: "tmp", Mode: cpio.TypeDir | cpio.ModeSticky | 0o777, Mtime: mtime.Unix()},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("archive entries (-want +got):\n%s", diff)
	}
}

func TestPayload(t *testing.T) {
	bz := make([]byte, 4096)
	copy(bz[0x202:], "HdrS")
	bz[0x1f1] = 1 // setup sectors: protected-mode code at 1024
	binary.LittleEndian.PutUint32(bz[0x248:], 100)
	binary.LittleEndian.PutUint32(bz[0x24c:], 50)
	copy(bz[1124:], "\xfd7zXZ\x00rest")
	got, err := Payload(bz)
	if err != nil {
		t.Fatalf("Payload: %v", err)
	}
	if !bytes.HasPrefix(got, []byte("\xfd7zXZ\x00rest")) {
		t.Errorf("Payload = %q..., want the xz stream", got[:10])
	}
	if _, err := Payload(make([]byte, 4096)); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("Payload(zeros) error = %v, want ErrNotBzImage", err)
	}
	copy(bz[1124:], "gzip")
	if _, err := Payload(bz); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("Payload(non-xz payload) error = %v, want ErrNotBzImage", err)
	}
}
