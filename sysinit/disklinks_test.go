package sysinit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mkfs makes a filesystem image at path with the given label.
func mkfs(t *testing.T, kind, path, label string) {
	t.Helper()
	var cmd *exec.Cmd
	switch kind {
	case "ext4":
		if err := os.WriteFile(path, make([]byte, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("mkfs.ext4", "-q", "-F", "-L", label, "-U", "0e2f3a4b-1c2d-4e5f-8a9b-0c1d2e3f4a5b", path)
	case "vfat":
		if err := os.WriteFile(path, make([]byte, 4<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command("mkfs.vfat", "-n", label, "-i", "1234ABCD", path)
	case "iso9660":
		src := t.TempDir()
		cmd = exec.Command("genisoimage", "-quiet", "-V", label, "-o", path, src)
	}
	if _, err := exec.LookPath(cmd.Path); err != nil {
		t.Skipf("needs %s (see .ci/deps)", cmd.Args[0])
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
}

func TestDiskLinks(t *testing.T) {
	tests := []struct {
		kind, dev, label string
		want             FS
	}{
		{"ext4", "vda1", "RANCHER_STATE", FS{Type: "ext4", Label: "RANCHER_STATE", UUID: "0e2f3a4b-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}},
		{"vfat", "vdb", "config-2", FS{Type: "vfat", Label: "config-2", UUID: "1234-ABCD"}},
		{"iso9660", "sr0", "cidata", FS{Type: "iso9660", Label: "cidata"}},
	}
	dev := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			p := filepath.Join(dev, tt.dev)
			mkfs(t, tt.kind, p, tt.label)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ProbeFS(f)
			f.Close()
			if err != nil || got != tt.want {
				t.Fatalf("ProbeFS(%s) = %+v, %v; want %+v", tt.kind, got, err, tt.want)
			}
			if err := LinkDisk(dev, tt.dev); err != nil {
				t.Fatalf("LinkDisk: %v", err)
			}
			link := filepath.Join(dev, "disk", "by-label", tt.want.Label)
			if target, err := os.Readlink(link); err != nil || target != "../../"+tt.dev {
				t.Errorf("%s -> %q, %v; want ../../%s", link, target, err, tt.dev)
			}
			if _, err := os.Stat(link); err != nil {
				t.Errorf("by-label link does not resolve: %v", err)
			}
			if err := UnlinkDisk(dev, tt.dev); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(link); !os.IsNotExist(err) {
				t.Errorf("after UnlinkDisk, %s still exists", link)
			}
		})
	}
	t.Run("no filesystem: no link, no error", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dev, "vdc"), make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := LinkDisk(dev, "vdc"); err != nil {
			t.Errorf("LinkDisk(empty) = %v", err)
		}
	})
}

func FuzzProbeFS(f *testing.F) {
	f.Add(make([]byte, 2048))
	sb := make([]byte, 2048)
	sb[1024+0x38], sb[1024+0x39] = 0x53, 0xEF
	f.Add(sb)
	fat := make([]byte, 512)
	fat[510], fat[511] = 0x55, 0xAA
	copy(fat[0x52:], "FAT32   ")
	f.Add(fat)
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := ProbeFS(bytes.NewReader(b))
		if err == nil && fs.Type == "" {
			t.Errorf("ProbeFS = %+v with no error and no type", fs)
		}
	})
}
