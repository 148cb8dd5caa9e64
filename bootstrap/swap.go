package bootstrap

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// swapSignature ends the first page of a swap area (version 1, the only
// one Linux has read since 2.6).
const swapSignature = "SWAPSPACE2"

// MakeSwap writes a swap area's header (what mkswap(8) writes) to the
// first page of f, for an area of size bytes, with label (up to 16 bytes).
// It returns the area's UUID.
func MakeSwap(f *os.File, size int64, label string) ([16]byte, error) {
	var uuid [16]byte
	page := int64(os.Getpagesize())
	pages := size / page
	if pages < 10 {
		return uuid, fmt.Errorf("mkswap %s: %d bytes is too small for a swap area", f.Name(), size)
	}
	if len(label) > 16 {
		return uuid, fmt.Errorf("mkswap %s: label %q is longer than 16 bytes", f.Name(), label)
	}
	if _, err := rand.Read(uuid[:]); err != nil {
		return uuid, fmt.Errorf("mkswap %s: %w", f.Name(), err)
	}
	uuid[6] = uuid[6]&0x0f | 0x40 // version 4
	uuid[8] = uuid[8]&0x3f | 0x80 // RFC 4122 variant
	hdr := make([]byte, page)
	// union swap_header.info, after 1024 bytes of boot block: version,
	// last_page, nr_badpages, uuid, volume_name.
	binary.LittleEndian.PutUint32(hdr[1024:], 1)
	binary.LittleEndian.PutUint32(hdr[1028:], uint32(pages-1))
	copy(hdr[1036:], uuid[:])
	copy(hdr[1052:], label)
	copy(hdr[page-int64(len(swapSignature)):], swapSignature)
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return uuid, fmt.Errorf("mkswap %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return uuid, fmt.Errorf("mkswap %s: %w", f.Name(), err)
	}
	return uuid, nil
}

// IsSwap says whether r starts with a swap area's header.
func IsSwap(r io.ReaderAt) bool {
	page := int64(os.Getpagesize())
	sig := make([]byte, len(swapSignature))
	if _, err := r.ReadAt(sig, page-int64(len(sig))); err != nil {
		return false
	}
	return string(sig) == swapSignature
}

// swapon(2) flags, from <sys/swap.h>.
const (
	swapFlagPrefer   = 0x8000
	swapFlagPrioMask = 0x7fff
)

// ReadSwapIdentity reads the label and UUID of the swap area r holds; ok
// is false when r holds none.
func ReadSwapIdentity(r io.ReaderAt) (id FSIdentity, ok bool) {
	if !IsSwap(r) {
		return id, false
	}
	info := make([]byte, 32)
	if _, err := r.ReadAt(info, 1036); err != nil {
		return id, false
	}
	id.UUID = formatUUID(info[:16])
	id.Label = strings.TrimRight(string(info[16:]), "\x00")
	return id, true
}

// Swapon starts swapping to dev (a block device or a file holding a swap
// area). priority < 0 leaves the kernel's choice; higher is used first.
func Swapon(dev string, priority int) error {
	p, err := unix.BytePtrFromString(dev)
	if err != nil {
		return fmt.Errorf("swapon %s: %w", dev, err)
	}
	flags := 0
	if priority >= 0 {
		flags = swapFlagPrefer | priority&swapFlagPrioMask
	}
	if _, _, e := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), uintptr(flags), 0); e != 0 {
		return fmt.Errorf("swapon %s: %w", dev, e)
	}
	return nil
}

// ZramPriority is the swap priority of the zram device: above any disk
// swap of mounts, so pages go to compressed RAM first.
const ZramPriority = 100

// ZramSwap makes a zram device (compressed RAM, the kernel's default
// compressor) of size bytes and swaps to it, first: under memory pressure
// the kernel can then page out the daemons' cold memory, compressed,
// instead of dropping the engine binaries' pages and decompressing them
// from the system image again and again. sysDir is /sys. It returns the
// device. The zram module must be loaded.
func ZramSwap(sysDir string, size int64) (string, error) {
	id, err := freeZram(sysDir)
	if err != nil {
		return "", err
	}
	dev := "/dev/zram" + id
	block := filepath.Join(sysDir, "block", "zram"+id)
	if err := os.WriteFile(filepath.Join(block, "disksize"), []byte(strconv.FormatInt(size, 10)), 0o644); err != nil {
		return "", fmt.Errorf("zram %s: set its size: %w", dev, err)
	}
	// devtmpfs makes the node as the disk appears; wait for it briefly.
	var f *os.File
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if f, err = os.OpenFile(dev, os.O_RDWR, 0); err == nil || time.Since(start) > 2*time.Second {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("zram: %w", err)
	}
	_, err = MakeSwap(f, size, "berth-zram")
	f.Close()
	if err != nil {
		return "", err
	}
	return dev, Swapon(dev, ZramPriority)
}

// freeZram returns the number of a zram device with no size yet: zram0
// when the module has just been loaded, else a new one from hot_add.
func freeZram(sysDir string) (string, error) {
	if data, err := os.ReadFile(filepath.Join(sysDir, "block/zram0/disksize")); err == nil && strings.TrimSpace(string(data)) == "0" {
		return "0", nil
	}
	data, err := os.ReadFile(filepath.Join(sysDir, "class/zram-control/hot_add"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("zram: no zram device (is the zram module loaded?): %w", err)
		}
		return "", fmt.Errorf("zram: add a device: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}
