// Package install writes Berth to a disk: the code behind `ros install`
// and the cloud image builders.
//
// The disk layout is planned as data first (NewPlan), checked against what
// the device holds (Check), shown to the user (Plan.String), and only then
// written (Install). The layout is GPT with three partitions, so the same
// disk boots from BIOS and from UEFI:
//
//	1  BIOS boot   1 MiB    GRUB's i386-pc core image
//	2  EFI system  32 MiB   FAT, /EFI/BOOT/BOOTX64.EFI (GRUB x86_64-efi)
//	3  state       the rest ext4 labelled RANCHER_STATE: /boot (kernel,
//	                        small initrd, berth/system.sqfs, grub.cfg) and the
//	                        persistent directories, with the given
//	                        cloud-config at var/lib/rancher/conf/cloud-config.yml
//
// Every filesystem is written at its offset on the named device itself
// (mkfs.fat --offset, mke2fs -E offset, mtools @@offset): nothing but the
// named device is ever opened for writing, and no partition device node or
// mount is needed, so the same code makes an image in a plain file.
package install
