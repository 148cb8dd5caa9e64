package bootstrap

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// MediaImagePath is where a boot medium (berth.iso, on a CD-ROM or a USB
// stick) carries the system image, relative to its root. Booted from
// there, the initramfs is only the small one, and the system image is
// read from the medium instead of sitting in RAM.
const MediaImagePath = "berth/system.sqfs"

// MediaModules are the drivers and filesystems needed to find the system
// image on a boot medium: CD-ROM and disk controllers, ISO 9660 and FAT,
// and the loop device and squashfs to mount it.
func MediaModules() []string {
	return []string{
		"virtio_pci", "virtio_blk", "virtio_scsi", "ata_piix", "ahci", "sd_mod", "sr_mod", "nvme",
		"isofs", "vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8", "loop", "squashfs",
	}
}

// mediaTypes are the filesystems a boot medium may have. Not ext4: the
// state partition is mounted read-write later, which a read-only mount
// of the same device now would refuse.
var mediaTypes = []string{"iso9660", "vfat"}

// FindSystemImage looks for the system image on the block devices: each
// is mounted read-only (ISO 9660 or FAT) under dir, and the first that
// has MediaImagePath stays mounted; it returns the image's path there.
// Devices are looked at again every 100 ms for up to wait, since a CD-ROM
// drive's probe finishes after its driver has loaded. devices lists the
// candidates (nil: every block device in /sys/class/block).
func FindSystemImage(log *Logger, dir string, wait time.Duration, devices func() []string) (string, error) {
	if devices == nil {
		devices = blockDevices
	}
	deadline := time.Now().Add(wait)
	// Devices with a filesystem that has no image are not tried again;
	// those none mounted are (a CD-ROM being probed, an empty tray).
	done := map[string]bool{}
	for {
		for _, dev := range devices() {
			if done[dev] {
				continue
			}
			p, mounted := mediaImage(log, dev, dir)
			if p != "" {
				return p, nil
			}
			done[dev] = mounted
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("find the system image: no block device has /%s on ISO 9660 or FAT (looked at %v for %s)", MediaImagePath, devices(), wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mediaImage mounts dev read-only under dir and returns the system
// image's path on it, unmounting it again when it has none; mounted says
// whether any filesystem could be mounted.
func mediaImage(log *Logger, dev, dir string) (path string, mounted bool) {
	target := filepath.Join(dir, filepath.Base(dev))
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", false
	}
	defer func() {
		if path == "" {
			_ = os.Remove(target)
		}
	}()
	for _, fs := range mediaTypes {
		if err := unix.Mount(dev, target, fs, unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
			continue
		}
		p := filepath.Join(target, MediaImagePath)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			log.Printf("system image: /%s on %s (%s), read from there instead of RAM", MediaImagePath, dev, fs)
			return p, true
		}
		if err := unix.Unmount(target, 0); err != nil {
			log.Printf("unmount %s: %v", target, err)
		}
		return "", true
	}
	return "", false
}
