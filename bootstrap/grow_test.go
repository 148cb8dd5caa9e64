package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// gptImage writes a 64 MiB disk image with a BIOS boot partition and a
// 16 MiB state partition after it (or before it, with stateFirst), as
// Berth's cloud images have, and then makes the file size MiB long: a
// cloud image on a bigger disk.
func gptImage(t *testing.T, size int64, stateFirst bool) (string, *gpt.Table) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	b, err := file.OpenFromPath(img, false)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := b.Writable()
	bios := &gpt.Partition{Index: 1, Start: 2048, End: 4095, Type: gpt.BIOSBoot, Name: "bios"}
	state := &gpt.Partition{Index: 2, Start: 4096, End: 4096 + 32768 - 1, Type: gpt.LinuxFilesystem, Name: "state", GUID: "3C1B5E2A-0F4D-4B6A-9E1C-2D3F4A5B6C7D"}
	if stateFirst {
		bios.Start, bios.End = 40960, 40960+2047
	}
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		GUID: "9B1D0E2A-5C1F-4E0B-8C1A-0D6F1E2B3C4D", Partitions: []*gpt.Partition{bios, state}}
	if err := table.Write(w, 64<<20); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	return img, table
}

// growImage is growTable on an image file.
func growImage(t *testing.T, img string, start int64) (int64, int64, error) {
	t.Helper()
	b, err := file.OpenFromPath(img, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return growTable(b, start)
}

// TestGrowTable: the state partition, last on a disk grown from 64 to 128
// MiB, ends where the new disk's usable space ends; the backup table is
// at the new end; GUIDs, names and the other partition stay as they were.
func TestGrowTable(t *testing.T) {
	img, table := gptImage(t, 128<<20, false)
	gained, length, err := growImage(t, img, 4096)
	if err != nil {
		t.Fatalf("growTable: %v", err)
	}
	const lastUsable = 128<<20/512 - 34
	if want := int64(lastUsable-(4096+32768-1)) * 512; gained != want {
		t.Errorf("gained %d bytes, want %d", gained, want)
	}
	if want := int64(lastUsable-4096+1) * 512; length != want {
		t.Errorf("length %d, want %d", length, want)
	}
	f, err := file.OpenFromPath(img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := gpt.Read(f, 512, 512)
	if err != nil {
		t.Fatalf("read GPT back: %v", err)
	}
	if len(got.Partitions) < 2 {
		t.Fatalf("partitions after growing: %+v", got.Partitions)
	}
	p0, p1 := got.Partitions[0], got.Partitions[1]
	if got.GUID != table.GUID || p0.Start != 2048 || p0.End != 4095 || p0.Type != gpt.BIOSBoot ||
		p1.Start != 4096 || p1.End != lastUsable || p1.Name != "state" || !strings.EqualFold(p1.GUID, table.Partitions[1].GUID) {
		t.Errorf("GPT after growing: disk %s, partitions %+v %+v", got.GUID, p0, p1)
	}
	last := make([]byte, 8)
	if _, err := f.ReadAt(last, 128<<20-512); err != nil || string(last) != "EFI PART" {
		t.Errorf("last sector starts %q (%v), want the backup GPT header", last, err)
	}
	// Again: nothing left to gain.
	if gained, _, err := growImage(t, img, 4096); err != nil || gained != 0 {
		t.Errorf("second growTable = %d, %v; want 0, nil", gained, err)
	}
}

func TestGrowTableRefuses(t *testing.T) {
	img, _ := gptImage(t, 128<<20, true)
	if _, _, err := growImage(t, img, 4096); err == nil || !strings.Contains(err.Error(), "not the last one") {
		t.Errorf("state partition before another: %v; want a refusal", err)
	}
	if _, _, err := growImage(t, img, 9999); err == nil || !strings.Contains(err.Error(), "no GPT entry starts at sector 9999") {
		t.Errorf("unknown start: %v", err)
	}
	blank := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(blank, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := growImage(t, blank, 2048); err == nil || !strings.Contains(err.Error(), "only GPT disks") {
		t.Errorf("no GPT: %v", err)
	}
}
