package install

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

func TestIdentify(t *testing.T) {
	put := func(size int, off int, sig string) []byte {
		b := make([]byte, size)
		copy(b[off:], sig)
		return b
	}
	mbr := make([]byte, 4096)
	mbr[446+4] = 0x83
	mbr[510], mbr[511] = 0x55, 0xaa
	ext := make([]byte, 4096)
	ext[1024+56], ext[1024+57] = 0x53, 0xef
	copy(ext[1024+120:], "DATA")
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"blank", make([]byte, 1<<20), ""},
		{"short", []byte("x"), ""},
		{"ext4", ext, `an ext2/3/4 filesystem labelled "DATA"`},
		{"gpt", put(4096, 512, "EFI PART"), "a GPT partition table"},
		{"mbr", mbr, "an MBR partition table"},
		{"squashfs", put(4096, 0, "hsqs"), "a squashfs filesystem"},
		{"iso", put(40000, 0x8001, "CD001"), "an ISO 9660 filesystem"},
		{"swap", put(4096, 4086, "SWAPSPACE2"), "a swap area"},
		{"fat32", put(4096, 0x52, "FAT32"), "a FAT filesystem"},
		{"xfs", put(4096, 0, "XFSB"), "an XFS filesystem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Identify(bytes.NewReader(tt.data)); got != tt.want {
				t.Errorf("Identify = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckRealFilesystems(t *testing.T) {
	dir := t.TempDir()
	mi := writeFile(t, dir, "mountinfo", "")
	t.Run("blank", func(t *testing.T) {
		if err := Check(sparse(t, dir, "blank.img", 64<<20), mi); err != nil {
			t.Errorf("Check(blank) = %v, want nil", err)
		}
	})
	t.Run("gpt", func(t *testing.T) {
		img := sparse(t, dir, "gpt.img", 64<<20)
		f, _ := os.OpenFile(img, os.O_RDWR, 0)
		tb := &gpt.Table{ProtectiveMBR: true, Partitions: []*gpt.Partition{{Index: 1, Start: 2048, End: 4095, Type: gpt.LinuxFilesystem}}}
		if err := tb.Write(f, 64<<20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := Check(img, mi); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "GPT") {
			t.Errorf("Check(gpt) = %v, want refused", err)
		}
	})
	for _, mkfs := range [][]string{{"mkfs.ext4", "-q", "-F"}, {"mkfs.fat"}} {
		t.Run(mkfs[0], func(t *testing.T) {
			if _, err := exec.LookPath(mkfs[0]); err != nil {
				t.Skipf("%s not installed: %v", mkfs[0], err)
			}
			img := sparse(t, dir, mkfs[0]+".img", 64<<20)
			if out, err := exec.Command(mkfs[0], append(mkfs[1:], img)...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", mkfs[0], err, out)
			}
			err := Check(img, mi)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "filesystem") || !strings.Contains(err.Error(), "-f") {
				t.Errorf("Check(%s image) = %v, want a refusal naming the filesystem and -f", mkfs[0], err)
			}
		})
	}
}

func TestCheckMountinfo(t *testing.T) {
	dir := t.TempDir()
	img := sparse(t, dir, "my disk.img", 64<<20)
	// mountinfo escapes the space in the mount point.
	plain := sparse(t, dir, "plain.img", 64<<20)
	line := "36 25 7:0 / /mnt/my\\040data rw,relatime shared:1 - ext4 " + plain + " rw\n"
	mi := writeFile(t, dir, "mountinfo", "22 1 0:21 / /proc rw - proc proc rw\n"+line)
	err := Check(plain, mi)
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != "is mounted at /mnt/my data" {
		t.Errorf("Check(mounted) = %v, want refused: is mounted at /mnt/my data", err)
	}
	if err := Check(img, mi); err != nil {
		t.Errorf("Check(another, unmounted file) = %v", err)
	}
	if err := Check(filepath.Join(dir, "missing"), mi); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("Check(missing) = %v, want a plain error", err)
	}
}

// TestCheckLoopMounted mounts an ext4 image through a loop device and
// checks that both the image file and the loop device are refused.
func TestCheckLoopMounted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for losetup and mount")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	dir := t.TempDir()
	img := sparse(t, dir, "disk.img", 64<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "ext4", loop, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount ext4 from a loop device here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	for _, dev := range []string{img, loop} {
		err := Check(dev, "")
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "is mounted at "+mnt) {
			t.Errorf("Check(%s) = %v, want: is mounted at %s", dev, err, mnt)
		}
	}
}
