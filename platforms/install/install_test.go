package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/go-cmp/cmp"
)

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages in .ci/deps): %v", tool, err)
		}
	}
	for _, f := range []string{"/usr/lib/grub/i386-pc/boot.img", "/usr/lib/grub/x86_64-efi/linux.mod"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("GRUB modules missing (grub-pc-bin, grub-efi-amd64-bin): %v", err)
		}
	}
}

var installTools = []string{"grub-mkimage", "mkfs.fat", "mcopy", "mdir", "mke2fs", "debugfs"}

// sparse makes an empty sparse image file of size bytes.
func sparse(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// diskSize keeps the tests' images small (and quick to hash).
const diskSize = MinDiskBytes

// installed installs onto a fresh image in dir and returns its path.
func installed(t *testing.T, dir, name string, opts ...Option) (string, *Plan) {
	t.Helper()
	img := sparse(t, dir, name, diskSize)
	opts = append([]Option{
		WithKernel(writeFile(t, dir, "vmlinuz", "kernel bytes")),
		WithInitrd(writeFile(t, dir, "initrd", "initrd bytes")),
		WithSystemImage(writeFile(t, dir, "system.sqfs", "system image bytes")),
		WithSeed("test"), WithEpoch(time.Unix(1700000000, 0)),
	}, opts...)
	p, err := NewPlan(img, diskSize, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := Install(context.Background(), p); err != nil {
		t.Fatalf("Install: %v", err)
	}
	return img, p
}

// debugfsCat reads a file from the state partition of img.
func debugfsCat(t *testing.T, img string, p *Plan, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img+"?offset="+itoa(p.Layout.Part(PartState).Offset())).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return string(out)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestInstallImage(t *testing.T) {
	needTools(t, installTools...)
	dir := t.TempDir()
	cc := writeFile(t, dir, "cc.yml", "#cloud-config\nhostname: berth-test\n")
	img, p := installed(t, dir, "disk.img", WithCloudConfig(cc), WithPlatform(GCE), WithAppend("rancher.debug"))

	t.Run("partition table", func(t *testing.T) {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		table, err := gpt.Read(f, 512, 512)
		if err != nil {
			t.Fatalf("read GPT: %v", err)
		}
		type part struct {
			Name       string
			Type       gpt.Type
			Start, End uint64
		}
		var got []part
		for _, pt := range table.Partitions {
			if pt.Start == 0 {
				continue
			}
			got = append(got, part{pt.Name, pt.Type, pt.Start, pt.End})
		}
		want := []part{
			{"BIOS boot", gpt.BIOSBoot, 2048, 4095},
			{"EFI system", gpt.EFISystemPartition, 4096, 69631},
			{StateLabel, gpt.LinuxFilesystem, 69632, diskSize/512 - 2048 - 1},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("partitions (-want +got):\n%s", diff)
		}
	})
	t.Run("boot sector", func(t *testing.T) {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 4096*512)
		if _, err := f.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		boot, _ := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
		if b[510] != 0x55 || b[511] != 0xaa || b[450] != 0xee {
			t.Errorf("protective MBR lost: signature % x, type %#x", b[510:512], b[450])
		}
		if !bytes.Equal(b[:0x5c], boot[:0x5c]) {
			t.Error("MBR code is not GRUB's boot.img")
		}
		if got := b[0x5c]; got != 0x00 || b[0x5d] != 0x08 {
			t.Errorf("boot.img points at sector %x%x, want 0x800 (the BIOS boot partition)", b[0x5d], got)
		}
		// diskboot.img, core's first sector, loads the rest from 2049 on.
		if got := binary.LittleEndian.Uint64(b[2048*512+500:]); got != 2049 {
			t.Errorf("core image's blocklist starts at sector %d, want 2049", got)
		}
	})
	t.Run("EFI system partition", func(t *testing.T) {
		out, err := exec.Command("mdir", "-b", "-i", img+"@@"+itoa(p.Layout.Part(PartEFI).Offset()), "::/EFI/BOOT").CombinedOutput()
		if err != nil {
			t.Fatalf("mdir: %v: %s", err, out)
		}
		if !strings.Contains(string(out), "BOOTX64.EFI") {
			t.Errorf("ESP /EFI/BOOT holds %q, want BOOTX64.EFI", out)
		}
	})
	t.Run("state partition", func(t *testing.T) {
		f, _ := os.Open(img)
		defer f.Close()
		sec := make([]byte, 4096)
		f.ReadAt(sec, p.Layout.Part(PartState).Offset())
		if got := Identify(bytes.NewReader(sec)); got != `an ext2/3/4 filesystem labelled "RANCHER_STATE"` {
			t.Errorf("state partition holds %q", got)
		}
		if got := debugfsCat(t, img, p, "/"+CloudConfigPath); got != "#cloud-config\nhostname: berth-test\n" {
			t.Errorf("cloud-config on the state partition = %q", got)
		}
		if got := debugfsCat(t, img, p, "/boot/vmlinuz"); got != "kernel bytes" {
			t.Errorf("/boot/vmlinuz = %q", got)
		}
		if got := debugfsCat(t, img, p, "/boot/initrd"); got != "initrd bytes" {
			t.Errorf("/boot/initrd = %q", got)
		}
		if got := debugfsCat(t, img, p, "/boot/berth/system.sqfs"); got != "system image bytes" {
			t.Errorf("/boot/berth/system.sqfs = %q", got)
		}
		cfg := debugfsCat(t, img, p, "/boot/grub/grub.cfg")
		want := "linux /boot/vmlinuz rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait rancher.cloud_init.datasources=[gce] console=ttyS0,115200n8 berth.image=state panic=10 cryptomgr.notests rancher.debug\n"
		if !strings.Contains(cfg, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, cfg)
		}
		out, err := exec.Command("debugfs", "-R", "stat /"+CloudConfigPath, img+"?offset="+itoa(p.Layout.Part(PartState).Offset())).Output()
		if err != nil || !strings.Contains(string(out), "Mode:  0600") {
			t.Errorf("cloud-config is not mode 0600 (it may hold secrets): %v\n%s", err, out)
		}
	})
	t.Run("refused afterwards", func(t *testing.T) {
		err := Check(img, writeFile(t, dir, "mountinfo", ""))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "holds a GPT partition table") {
			t.Errorf("Check on an installed disk = %v, want a refusal naming the GPT", err)
		}
	})
}

func TestInstallReproducible(t *testing.T) {
	needTools(t, installTools...)
	dir := t.TempDir()
	sum := func(name string) [32]byte {
		img, _ := installed(t, dir, name)
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	a := sum("a.img")
	time.Sleep(1100 * time.Millisecond) // a clock-stamped field would now differ
	if b := sum("b.img"); a != b {
		t.Errorf("two installs with the same seed and epoch differ: %x vs %x", a, b)
	}
}

func TestInstallTooSmall(t *testing.T) {
	if _, err := NewPlan("/dev/x", 64<<20, WithKernel("k"), WithInitrd("i")); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("NewPlan on 64 MiB = %v, want too small", err)
	}
}
