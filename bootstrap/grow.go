package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// GrowState makes the state filesystem on part fill disk
// (rancher.resize_device, for a cloud image booted on a bigger disk than
// it was built for). When part is a partition of disk's GPT and the last
// one, it is made to end where the GPT's usable space ends (the backup
// table moves to the disk's end), the kernel is told the new size
// (BLKPG, since the filesystem is mounted and the table cannot be read
// again), and resize2fs grows the mounted ext4 online. part may also be
// disk itself (a state filesystem on the whole disk). It returns the
// bytes the partition gained; the filesystem is grown to the partition's
// size in either case (after a boot cut short between the two steps).
func GrowState(ctx context.Context, log *Logger, disk, part string) (int64, error) {
	disk, part = resolveDev(disk), resolveDev(part)
	var gained int64
	if part != disk {
		var err error
		if gained, err = growPartition(disk, part); err != nil {
			return 0, fmt.Errorf("grow %s to the end of %s: %w", part, disk, err)
		}
		if gained > 0 {
			log.Printf("state: %s grown by %d MiB to the end of %s", part, gained>>20, disk)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "resize2fs", part).CombinedOutput(); err != nil {
		return gained, fmt.Errorf("resize2fs %s: %w: %s", part, err, strings.TrimSpace(string(out)))
	}
	return gained, nil
}

// resolveDev follows a /dev/disk/by-* link to its device node.
func resolveDev(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// growPartition moves part's end to the last usable sector of disk's GPT
// when part is its last partition, and tells the kernel.
func growPartition(disk, part string) (int64, error) {
	sys := filepath.Join("/sys/class/block", filepath.Base(disk), filepath.Base(part))
	start, err := readSysInt(filepath.Join(sys, "start"))
	if err != nil {
		return 0, fmt.Errorf("%s is not a partition of %s: %w", part, disk, err)
	}
	pno, err := readSysInt(filepath.Join(sys, "partition"))
	if err != nil {
		return 0, err
	}
	// Not exclusive: the kernel refuses that while a partition is mounted.
	b, err := file.OpenFromPathWithExclusive(disk, false, false)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	gained, length, err := growTable(b, start)
	if err != nil || gained == 0 {
		return 0, err
	}
	f, err := b.Sys()
	if err != nil {
		return 0, err
	}
	bp := unix.BlkpgPartition{Start: start * 512, Length: length, Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(bp)), Data: (*byte)(unsafe.Pointer(&bp))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return 0, fmt.Errorf("tell the kernel partition %d's new size (BLKPG): %w", pno, errno)
	}
	return gained, nil
}

// growTable rewrites the GPT of b (a disk or an image file) so that the
// partition starting at sector start, which must be the last one, ends at
// the last usable sector. It returns the bytes gained (0 when it already
// ends there) and the partition's new length in bytes.
func growTable(b backend.Storage, start int64) (gained, length int64, err error) {
	size, err := b.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, fmt.Errorf("disk size: %w", err)
	}
	old, err := gpt.Read(b, 512, 512)
	if err != nil {
		return 0, 0, fmt.Errorf("read GPT (only GPT disks are grown): %w", err)
	}
	sector := int64(old.LogicalSectorSize)
	// The end of the disk less the backup table (32 sectors of entries
	// and its header), as a fresh table of 128 entries has it.
	lastUsable := uint64(size/sector) - 34
	var target *gpt.Partition
	for _, p := range old.Partitions {
		if p.Type != gpt.Unused && int64(p.Start) == start {
			target = p
		}
	}
	if target == nil {
		return 0, 0, fmt.Errorf("no GPT entry starts at sector %d", start)
	}
	for _, p := range old.Partitions {
		if p.Type != gpt.Unused && p.Start > target.Start {
			return 0, 0, fmt.Errorf("the partition at sector %d is not the last one (another starts at sector %d)", start, p.Start)
		}
	}
	if target.End >= lastUsable {
		return 0, int64(target.End-target.Start+1) * sector, nil
	}
	gained = int64(lastUsable-target.End) * sector
	// A new table, so that its backup goes to the disk's new end; the
	// same disk and partition GUIDs, types, names and attributes.
	t := &gpt.Table{LogicalSectorSize: old.LogicalSectorSize, PhysicalSectorSize: old.PhysicalSectorSize,
		ProtectiveMBR: old.ProtectiveMBR, GUID: old.GUID}
	for _, p := range old.Partitions {
		np := *p
		if p == target {
			np.End = lastUsable
			np.Size = (np.End - np.Start + 1) * uint64(sector)
		}
		t.Partitions = append(t.Partitions, &np)
	}
	w, err := b.Writable()
	if err != nil {
		return 0, 0, err
	}
	if err := t.Write(w, size); err != nil {
		return 0, 0, fmt.Errorf("write GPT: %w", err)
	}
	return gained, int64(lastUsable-target.Start+1) * sector, nil
}

func readSysInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, errors.New(p + ": not a number")
	}
	return n, nil
}
