package configdrive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/berthos/berth/datasources/fake"
	"github.com/berthos/berth/datasources/source"
)

const userData = "#cloud-config\nhostname: from-drive\n"

// image builds one kind of config drive into dir and returns its path.
func image(t *testing.T, kind, label string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "drive.img")
	files := fake.DriveFiles([]byte(userData))
	var err error
	switch kind {
	case "iso":
		err = fake.BuildISO(img, label, files)
	default:
		if terr := fake.FATTools(); terr != nil {
			t.Skipf("FAT fixtures need dosfstools and mtools: %v", terr)
		}
		bits := map[string]int{"fat12": 12, "fat16": 16, "fat32": 32}[kind]
		err = fake.BuildFAT(img, label, bits, files)
	}
	if err != nil {
		t.Fatalf("build %s image: %v", kind, err)
	}
	return img
}

// machine makes a fake root with the image as /dev/<name>.
func machine(t *testing.T, img, name string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"sys/class/block/" + name, "sys/class/block/vda", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// vda is a device without a filesystem Berth knows.
	if err := os.WriteFile(filepath.Join(root, "dev/vda"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(img, filepath.Join(root, "dev", name)); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestFetchEveryFilesystem(t *testing.T) {
	tests := []struct {
		kind, label, wantFS string
	}{
		{"iso", "config-2", ISO9660},
		{"iso", "CONFIG-2", ISO9660},
		{"fat12", "CONFIG-2", FAT12},
		{"fat16", "CONFIG-2", FAT16},
		{"fat32", "CONFIG-2", FAT32},
		{"fat32", "config-2", FAT32},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"/"+tt.label, func(t *testing.T) {
			t.Parallel()
			img := image(t, tt.kind, tt.label)
			root := machine(t, img, "sr0")
			devs := Scan(root)
			want := []Device{{Path: "/dev/sr0", FSType: tt.wantFS, Label: tt.label}}
			// mkfs.vfat may change the case of a label; any case is a match.
			if diff := cmp.Diff(want, devs, cmp.Comparer(strings.EqualFold)); diff != "" {
				t.Errorf("Scan (-want +got):\n%s", diff)
			}
			r, err := New(WithRoot(root)).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch = %v", err)
			}
			if string(r.UserData) != userData {
				t.Errorf("UserData = %q, want %q", r.UserData, userData)
			}
			if r.Meta.InstanceID != "83679162-1378-4288-a2d4-70e13ec132aa" || r.Meta.Hostname != "berth-1.novalocal" ||
				len(r.Meta.SSHPublicKeys) != 1 || r.Meta.PublicIPv4 != "203.0.113.30" {
				t.Errorf("Meta = %+v", r.Meta)
			}
			if r.Network == nil || r.Network.Interfaces["mac=fa:16:3e:00:00:01"].Addresses[0] != "192.0.2.30/24" {
				t.Errorf("Network = %+v", r.Network)
			}
			if got := string(r.Files["/etc/berth-injected"]); got != "injected by the fake drive\n" {
				t.Errorf("injected file = %q", got)
			}
		})
	}
}

func TestFetchNamedDevice(t *testing.T) {
	img := image(t, "iso", "config-2")
	root := machine(t, img, "sr0")
	s := New(WithRoot(root), WithDevice("/dev/sr0"))
	if s.Name() != "configdrive:/dev/sr0" {
		t.Errorf("Name = %q", s.Name())
	}
	if _, err := s.Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch = %v", err)
	}
	_, err := New(WithRoot(root), WithDevice("/dev/sr9")).Fetch(context.Background())
	if !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Fetch of a missing device = %v, want ErrNotFound", err)
	}
}

// TestFetchOpenStackOnly reads a drive with only the openstack/ tree (no
// ec2/, no network_data.json), as `make run` and many clouds write it.
func TestFetchOpenStackOnly(t *testing.T) {
	for _, kind := range []string{"iso", "fat16"} {
		t.Run(kind, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "drive.img")
			files := map[string][]byte{
				"openstack/latest/meta_data.json": []byte(`{"uuid": "only-openstack"}`),
				"openstack/latest/user_data":      []byte(userData),
			}
			var err error
			if kind == "iso" {
				err = fake.BuildISO(img, "config-2", files)
			} else {
				if terr := fake.FATTools(); terr != nil {
					t.Skipf("FAT fixtures need dosfstools and mtools: %v", terr)
				}
				err = fake.BuildFAT(img, "config-2", 16, files)
			}
			if err != nil {
				t.Fatal(err)
			}
			res, err := New(WithRoot(machine(t, img, "vdb")), WithDevice("/dev/vdb")).Fetch(context.Background())
			if err != nil {
				t.Fatalf("Fetch = %v", err)
			}
			if string(res.UserData) != userData || res.Meta.InstanceID != "only-openstack" {
				t.Errorf("Fetch = user-data %q, instance %q", res.UserData, res.Meta.InstanceID)
			}
		})
	}
}

func TestFetchAbsentAndWrongLabel(t *testing.T) {
	img := image(t, "iso", "cidata")
	root := machine(t, img, "sr0")
	_, err := New(WithRoot(root)).Fetch(context.Background())
	if !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Fetch with only a cidata drive = %v, want ErrNotFound", err)
	}
	_, err = New(WithRoot(t.TempDir())).Fetch(context.Background())
	if !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Fetch with no block devices = %v, want ErrNotFound", err)
	}
}

func TestReadTruncatedImage(t *testing.T) {
	for _, kind := range []string{"iso", "fat12", "fat32"} {
		t.Run(kind, func(t *testing.T) {
			b, err := os.ReadFile(image(t, kind, "CONFIG-2"))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, 100, 600, 2048, 40000, len(b) / 2, len(b) - 1} {
				r, err := Read(bytes.NewReader(b[:n]), int64(n))
				switch {
				case n <= 2048 && err == nil:
					t.Errorf("Read of %s cut to %d bytes = nil error, want a clear error", kind, n)
				case err == nil && string(r.UserData) != userData:
					// The cut spared nothing it needed, or it must fail.
					t.Errorf("Read of %s cut to %d bytes: UserData = %q, no error", kind, n, r.UserData)
				case err != nil && strings.Contains(err.Error(), "panic"):
					t.Errorf("Read of %s cut to %d bytes: %v", kind, n, err)
				}
			}
		})
	}
}

// TestFetchLoopDevice reads the drive through a real loop device, when the
// host allows attaching one (root).
func TestFetchLoopDevice(t *testing.T) {
	img := image(t, "iso", "config-2")
	dev, detach, err := attachLoop(img)
	if err != nil {
		t.Skipf("no loop device here (needs root and /dev/loop-control): %v", err)
	}
	defer detach()
	r, err := New(WithDevice(dev)).Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch(%s) = %v", dev, err)
	}
	if string(r.UserData) != userData {
		t.Errorf("UserData = %q", r.UserData)
	}
}

func FuzzRead(f *testing.F) {
	for _, kind := range []string{"iso", "fat12"} {
		dir := f.TempDir()
		img := filepath.Join(dir, "d.img")
		var err error
		if kind == "iso" {
			err = fake.BuildISO(img, "config-2", fake.DriveFiles([]byte(userData)))
		} else if fake.FATTools() == nil {
			err = fake.BuildFAT(img, "CONFIG-2", 12, fake.DriveFiles([]byte(userData)))
		} else {
			continue
		}
		if err != nil {
			f.Fatal(err)
		}
		b, _ := os.ReadFile(img)
		f.Add(b[:min(len(b), 64<<10)])
	}
	f.Add([]byte("CD001"))
	f.Fuzz(func(t *testing.T, b []byte) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = Read(bytes.NewReader(b), int64(len(b)))
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("Read of %d bytes did not return within 2s", len(b))
		}
	})
}

// TestCorruptISOCannotExhaustMemory: a drive whose directory record
// claims a huge extent (found by FuzzRead) made go-diskfs allocate
// hundreds of MiB; it must now fail at once, with little memory.
func TestCorruptISOCannotExhaustMemory(t *testing.T) {
	b, err := os.ReadFile("testdata/huge-directory-extent.iso")
	if err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	_, err = Read(bytes.NewReader(b), int64(len(b)))
	took := time.Since(start)
	runtime.ReadMemStats(&m1)
	if err == nil {
		t.Fatal("Read of a corrupt drive = nil error")
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 16<<20 || took > 100*time.Millisecond {
		t.Errorf("Read of a corrupt drive took %s and %d MiB, want a quick refusal (%v)", took, alloc>>20, err)
	}
	if !strings.Contains(err.Error(), "outside") {
		t.Errorf("error = %v, want it to say the extent lies outside the image", err)
	}
}

// TestReadMutatedImages reads 1000 ISO and FAT12 images with a few
// random bytes changed (a fixed seed, so failures reproduce): each must
// answer quickly and without a large allocation. The Go fuzzer spends its
// time minimising inputs this size; a longer run of this loop found the
// 432 MiB allocation that TestCorruptISOCannotExhaustMemory pins down.
func TestReadMutatedImages(t *testing.T) {
	var seeds [][]byte
	iso := filepath.Join(t.TempDir(), "d.iso")
	if err := fake.BuildISO(iso, "config-2", fake.DriveFiles([]byte(userData))); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(iso)
	// The whole image, and one cut short as a truncated drive would be.
	seeds = append(seeds, b, b[:min(len(b), 64<<10)])
	if fake.FATTools() == nil {
		img := filepath.Join(t.TempDir(), "d.img")
		if err := fake.BuildFAT(img, "CONFIG-2", 12, fake.DriveFiles([]byte(userData))); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(img)
		seeds = append(seeds, b[:64<<10])
	}
	r := rand.New(rand.NewSource(1))
	for i := range 1000 {
		s := seeds[i%len(seeds)]
		c := bytes.Clone(s)
		// Mutate where the metadata lives: the first 64 KiB.
		for range 1 + r.Intn(6) {
			c[r.Intn(min(len(c), 64<<10))] = byte(r.Intn(256))
		}
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		_, err := Read(bytes.NewReader(c), int64(len(c)))
		took := time.Since(start)
		runtime.ReadMemStats(&m1)
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 64<<20 || took > time.Second {
			t.Fatalf("mutant %d: Read took %s and %d MiB (err %v)", i, took, alloc>>20, err)
		}
	}
}

// TestCorruptFATCannotExhaustMemory: a FAT32 boot sector claiming huge
// FAT tables made go-diskfs allocate them; it must be refused at once.
func TestCorruptFATCannotExhaustMemory(t *testing.T) {
	if err := fake.FATTools(); err != nil {
		t.Skipf("FAT fixtures need dosfstools and mtools: %v", err)
	}
	img := filepath.Join(t.TempDir(), "d.img")
	if err := fake.BuildFAT(img, "CONFIG-2", 32, fake.DriveFiles([]byte(userData))); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// Sectors per FAT (FAT32 BPB offset 36): 1 GiB of table at 512 bytes a sector.
	binary.LittleEndian.PutUint32(b[36:40], 1<<21)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	_, err = Read(bytes.NewReader(b), int64(len(b)))
	runtime.ReadMemStats(&m1)
	if err == nil {
		t.Fatal("Read of a FAT32 image claiming 1 GiB FATs = nil error")
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 16<<20 {
		t.Errorf("Read allocated %d MiB before refusing (%v)", alloc>>20, err)
	}
}

// TestFATChainLoopIsRefused: go-diskfs follows a cluster chain until its
// end mark, so a chain that loops would grow without end.
func TestFATChainLoopIsRefused(t *testing.T) {
	if err := fake.FATTools(); err != nil {
		t.Skipf("FAT fixtures need dosfstools and mtools: %v", err)
	}
	for _, bits := range []int{12, 16, 32} {
		t.Run(fmt.Sprintf("fat%d", bits), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "d.img")
			if err := fake.BuildFAT(img, "CONFIG-2", bits, fake.DriveFiles([]byte(userData))); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			bps := int(binary.LittleEndian.Uint16(b[11:13]))
			fat := int(binary.LittleEndian.Uint16(b[14:16])) * bps
			spf := int(binary.LittleEndian.Uint16(b[22:24]))
			if bits == 32 {
				spf = int(binary.LittleEndian.Uint32(b[36:40]))
			}
			// Point the first cluster of the first file or directory mcopy
			// wrote (cluster 3: on FAT32, 2 is the root) at itself, in both FATs.
			for copyN := 0; copyN < int(b[16]); copyN++ {
				tab := b[fat+copyN*spf*bps:]
				switch bits {
				case 12: // cluster 3 is the high 12 bits of bytes 4..5
					v := binary.LittleEndian.Uint16(tab[4:6])
					binary.LittleEndian.PutUint16(tab[4:6], v&0x000f|3<<4)
				case 16:
					binary.LittleEndian.PutUint16(tab[6:8], 3)
				case 32:
					binary.LittleEndian.PutUint32(tab[12:16], 3)
				}
			}
			done := make(chan error, 1)
			go func() { _, err := Read(bytes.NewReader(b), int64(len(b))); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "loops") {
					t.Errorf("Read of a FAT with a looping chain = %v, want an error saying it loops", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("Read of a FAT with a looping chain did not return")
			}
		})
	}
}
