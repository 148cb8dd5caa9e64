package bootstrap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MediaImagePath is where a boot medium (berth.iso, on a CD-ROM or a USB
// stick) carries the system image, relative to its root. Booted from
// there, the initramfs is only the small one, and the system image is
// read from the medium instead of sitting in RAM.
const MediaImagePath = "berth/system.sqfs"

// StateImagePath is where an installed disk carries the system image,
// relative to its state filesystem's root: beside the kernel and the
// small initrd in /boot. Booted from there, the initramfs is only the
// small one, as from a boot medium.
const StateImagePath = "boot/berth/system.sqfs"

// StateImageArg on the kernel command line says that the system image is
// on the state filesystem, at StateImagePath: the installer puts it on
// every installed disk's command line, so that the image always matches
// the kernel and initrd it was installed with (not an older or newer
// berth.iso left in a CD-ROM drive).
const StateImageArg = "berth.image=state"

// ImageOnState says whether the kernel command line cmdline has
// StateImageArg.
func ImageOnState(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == StateImageArg {
			return true
		}
	}
	return false
}

// MediaModules are the drivers and filesystems needed to find the system
// image on a boot medium or an installed disk: CD-ROM and disk
// controllers, ISO 9660, FAT and ext4, and the loop device and squashfs
// to mount it.
func MediaModules() []string {
	return []string{
		"virtio_pci", "virtio_blk", "virtio_scsi", "ata_piix", "ahci", "sd_mod", "sr_mod", "nvme",
		"isofs", "vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8", "crc32c_generic", "ext4", "loop", "squashfs",
	}
}

// mediaTypes are the filesystems a boot medium may have. Not ext4: an
// ext4 filesystem is only looked at as the state filesystem, which is
// mounted read-write where it stays (a read-only mount of it now would
// make the state disk's read-write mount later fail).
var mediaTypes = []string{"iso9660", "vfat"}

// ImageSearch says where FindSystemImage looks for the system image.
type ImageSearch struct {
	// MediaDir is where boot media are mounted, one directory per device.
	MediaDir string
	// Wait bounds the search: devices are looked at again every 100 ms,
	// since a CD-ROM drive's probe finishes after its driver has loaded.
	Wait time.Duration
	// Devices lists the media candidates (nil: every block device in
	// /sys/class/block).
	Devices func() []string
	// State is the state filesystem (rancher.state: Dev "" is
	// LABEL=RANCHER_STATE), looked at before the media when StateDir is
	// set (StateImageArg): an installed disk has the image at
	// StateImagePath on it. StateDir is where it is mounted, read-write
	// as the state disk is (StateMount).
	State    StateOptions
	StateDir string
}

// FindSystemImage looks for the system image: first on the state
// filesystem (an installed disk), then on each block device mounted
// read-only (ISO 9660 or FAT) under s.MediaDir. The filesystem it is found
// on stays mounted; it returns the image's path there.
func FindSystemImage(log *Logger, s ImageSearch) (string, error) {
	devices := s.Devices
	if devices == nil {
		devices = blockDevices
	}
	deadline := time.Now().Add(s.Wait)
	// Devices with a filesystem that has no image are not tried again;
	// those none mounted are (a CD-ROM being probed, an empty tray).
	done := map[string]bool{}
	for {
		if s.StateDir != "" && !done[stateKey] {
			p, found := stateImage(log, s.State, s.StateDir)
			if p != "" {
				return p, nil
			}
			done[stateKey] = found
		}
		for _, dev := range devices() {
			if done[dev] {
				continue
			}
			p, mounted := mediaImage(log, dev, s.MediaDir)
			if p != "" {
				return p, nil
			}
			done[dev] = mounted
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("find the system image: no state filesystem with /%s (%s) and no block device with /%s on ISO 9660 or FAT (looked at %v for %s)",
				StateImagePath, stateSpec(s.State), MediaImagePath, devices(), s.Wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stateKey marks the state filesystem in FindSystemImage's done set.
const stateKey = "state filesystem"

// stateImage mounts the state filesystem on dir, as the state disk is
// mounted, and returns the system image's path on it, unmounting it
// again when it has none; found says whether the filesystem was there.
func stateImage(log *Logger, o StateOptions, dir string) (path string, found bool) {
	dev := FindDevice(stateSpec(o))
	if dev == "" {
		return "", false
	}
	m := stateMount(dev, o, dir)
	if err := m.Apply(); err != nil {
		log.Printf("system image: state filesystem: %v", err)
		return "", true
	}
	p := filepath.Join(dir, StateImagePath)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		log.Printf("system image: /%s on %s (%s, the state filesystem), read from there instead of RAM", StateImagePath, dev, m.FSType)
		return p, true
	}
	if err := unix.Unmount(dir, 0); err != nil {
		log.Printf("unmount %s: %v", dir, err)
	}
	return "", true
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
