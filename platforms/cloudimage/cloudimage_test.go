package cloudimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthos/berth/platforms/install"
	"github.com/google/go-cmp/cmp"
)

func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"grub-mkimage", "mkfs.fat", "mcopy", "mke2fs", "debugfs", "qemu-img", "tar", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian packages in .ci/deps): %v", tool, err)
		}
	}
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return [32]byte(h.Sum(nil))
}

func TestBuild(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	src := install.Sources{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), SystemImage: filepath.Join(dir, "system.sqfs")}
	os.WriteFile(src.Kernel, []byte("kernel"), 0o644)
	os.WriteFile(src.Initrd, []byte("initrd"), 0o644)
	os.WriteFile(src.SystemImage, []byte("system image"), 0o644)
	build := func(out string) []Result {
		res, err := New(src, WithOutDir(out), WithDiskSize(1<<30), WithSeed("commit"), WithEpoch(time.Unix(1700000000, 0))).Build(context.Background())
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		return res
	}
	a := build(filepath.Join(dir, "a"))
	var names []string
	for _, r := range a {
		names = append(names, filepath.Base(r.Path))
		if r.Bytes <= 0 || !strings.Contains(r.String(), "MiB") {
			t.Errorf("result %s: size %d, %q", r.Path, r.Bytes, r)
		}
	}
	if diff := cmp.Diff([]string{"berth-openstack.qcow2", "berth-gce.tar.gz", "berth-ec2.raw", "berth-ec2.vmdk"}, names); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "a", ".*"))
	if len(leftovers) > 0 {
		t.Errorf("build left %v behind", leftovers)
	}

	t.Run("qcow2 and vmdk hold a 1 GiB disk", func(t *testing.T) {
		for _, name := range []string{"berth-openstack.qcow2", "berth-ec2.vmdk"} {
			out, err := exec.Command("qemu-img", "info", "--output=json", filepath.Join(dir, "a", name)).Output()
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				Format      string `json:"format"`
				VirtualSize int64  `json:"virtual-size"`
			}
			json.Unmarshal(out, &info)
			if want := strings.TrimPrefix(filepath.Ext(name), "."); info.Format != want || info.VirtualSize != 1<<30 {
				t.Errorf("%s: %s of %d bytes, want %s of 1 GiB", name, info.Format, info.VirtualSize, want)
			}
		}
	})
	t.Run("gce tar holds disk.raw only", func(t *testing.T) {
		out, err := exec.Command("tar", "-tvzf", filepath.Join(dir, "a", "berth-gce.tar.gz")).Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out))
		if len(f) != 6 || f[5] != "disk.raw" || f[2] != "1073741824" || f[1] != "0/0" {
			t.Errorf("GCE tar lists %q, want one disk.raw of 1 GiB owned by 0/0", out)
		}
	})
	t.Run("platform of each disk", func(t *testing.T) {
		raw := filepath.Join(dir, "a", "berth-ec2.raw")
		f, _ := os.Open(raw)
		defer f.Close()
		if got := install.Identify(f); got != "a GPT partition table" {
			t.Errorf("berth-ec2.raw holds %q", got)
		}
		out, err := exec.Command("debugfs", "-R", "cat /boot/grub/grub.cfg", raw+"?offset=35651584").Output()
		if err != nil || !strings.Contains(string(out), "rancher.cloud_init.datasources=[ec2] console=ttyS0,115200n8 berth.image=state ") {
			t.Errorf("berth-ec2.raw grub.cfg lacks the ec2 datasource, the serial console and the system image on the state partition: %v\n%s", err, out)
		}
		// The system image sits beside the small initrd, which mounts
		// it from there instead of holding it in RAM.
		out, err = exec.Command("debugfs", "-R", "cat /boot/berth/system.sqfs", raw+"?offset=35651584").Output()
		if err != nil || string(out) != "system image" {
			t.Errorf("berth-ec2.raw /boot/berth/system.sqfs = %q, %v; want the system image", out, err)
		}
	})
	t.Run("reproducible", func(t *testing.T) {
		build(filepath.Join(dir, "b"))
		for _, name := range names {
			if name == "berth-ec2.raw" {
				continue // the same bytes as the install test proves; 1 GiB to hash
			}
			if sum(t, filepath.Join(dir, "a", name)) != sum(t, filepath.Join(dir, "b", name)) {
				t.Errorf("%s differs between two builds of the same inputs", name)
			}
		}
	})
}

func TestBuildRejectsOddSize(t *testing.T) {
	_, err := New(install.Sources{Kernel: "k", Initrd: "i"}, WithDiskSize(1<<30+1<<20), WithOutDir(t.TempDir())).Build(context.Background())
	if err == nil || !strings.Contains(err.Error(), "GiB") {
		t.Errorf("Build with 1025 MiB = %v, want a whole-GiB error", err)
	}
}

// TestFixVMDKCID checks that two VMDKs whose random CIDs differ, one of
// them printed by qemu-img with seven digits, come out byte-identical,
// with a well-formed CID line and the rest of the descriptor and the data
// after it untouched.
func TestFixVMDKCID(t *testing.T) {
	dir := t.TempDir()
	write := func(name, cid string) string {
		desc := "# Disk DescriptorFile\nversion=1\nCID=" + cid + "\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n"
		b := make([]byte, 2048)
		copy(b, "KDMV")
		copy(b[512:], desc)
		copy(b[1536:], "grain data")
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := write("a.vmdk", "fd98e1cd"), write("b.vmdk", "d98e1cd")
	for _, p := range []string{a, b} {
		if err := fixVMDKCID(p, "seed"); err != nil {
			t.Fatalf("fixVMDKCID(%s): %v", p, err)
		}
	}
	ra, _ := os.ReadFile(a)
	rb, _ := os.ReadFile(b)
	if !bytes.Equal(ra, rb) {
		t.Errorf("the two VMDKs differ after fixVMDKCID:\n%q\n%q", ra[512:700], rb[512:700])
	}
	cid := install.DeriveUUID("seed", "vmdk")[:8]
	if want := "version=1\nCID=" + cid + "\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\x00"; !bytes.Contains(ra, []byte(want)) {
		t.Errorf("descriptor = %q, want it to hold %q", bytes.TrimRight(ra[512:1024], "\x00"), want)
	}
	if len(ra) != 2048 || string(ra[1536:1546]) != "grain data" || string(ra[:4]) != "KDMV" {
		t.Errorf("fixVMDKCID changed the file outside the descriptor: %d bytes, %q", len(ra), ra[1536:1546])
	}
}
