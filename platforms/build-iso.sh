#!/bin/bash
# Makes $OUT/berth.iso from $OUT/vmlinuz, $OUT/initrd.small and
# $OUT/system.sqfs: the small initramfs is the ISO's /boot/initrd and the
# system image is /berth/system.sqfs, which PID 1 finds on the CD-ROM (or
# USB stick) and mounts from there, so that it does not sit in RAM. BIOS
# boot with
# isolinux, UEFI boot with a grub EFI binary in an El Torito FAT image,
# hybrid so it also boots from a USB stick. Both menus have two entries:
# the live system (the default) and the unattended install to /dev/vda,
# which erases it, installs and powers off (for image pipelines).
# Reproducible with SOURCE_DATE_EPOCH. Usage: platforms/build-iso.sh OUT
set -euo pipefail
OUT=$1
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0} LC_ALL=C TZ=UTC
# cryptomgr.notests: install.BootArgs (the kernel skips its crypto self-tests)
CMDLINE=${ISO_CMDLINE:-console=tty0 console=ttyS0,115200n8 panic=10 cryptomgr.notests}
INSTALL_DEV=${ISO_INSTALL_DEVICE:-/dev/vda}
INSTALL_ARGS="rancher.install.device=$INSTALL_DEV rancher.install.force"
INSTALL_TITLE="Install to $INSTALL_DEV (erases it; powers off)"
I=$OUT/iso.d
rm -rf "$I"; mkdir -p "$I/boot/grub" "$I/isolinux" "$I/EFI/BOOT" "$I/berth"
cp "$OUT/vmlinuz" "$I/boot/"
cp "$OUT/initrd.small" "$I/boot/initrd"
cp "$OUT/system.sqfs" "$I/berth/system.sqfs"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/{ldlinux,menu,libutil,libcom32}.c32 "$I/isolinux/"
# Three seconds to pick the install entry; the live system is the default,
# so a machine that boots the ISO by accident erases nothing.
cat > "$I/isolinux/isolinux.cfg" <<C
SERIAL 0 115200
UI menu.c32
MENU TITLE Berth
DEFAULT berth
TIMEOUT 30
PROMPT 0
LABEL berth
  MENU LABEL Berth
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd
  APPEND $CMDLINE
LABEL install
  MENU LABEL $INSTALL_TITLE
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd
  APPEND $CMDLINE $INSTALL_ARGS
C
cat > "$I/boot/grub/grub.cfg" <<C
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=3
set default=0
menuentry "Berth" {
  linux /boot/vmlinuz $CMDLINE
  initrd /boot/initrd
}
menuentry "$INSTALL_TITLE" {
  linux /boot/vmlinuz $CMDLINE $INSTALL_ARGS
  initrd /boot/initrd
}
C
cat > "$OUT/grub-early.cfg" <<'C'
search --no-floppy --set=root --file /boot/grub/grub.cfg
set prefix=($root)/boot/grub
configfile ($root)/boot/grub/grub.cfg
C
grub-mkimage -O x86_64-efi -p /boot/grub -c "$OUT/grub-early.cfg" -o "$I/EFI/BOOT/BOOTX64.EFI" \
  part_gpt part_msdos iso9660 fat normal linux configfile search search_fs_file echo gzio efi_gop efi_uga all_video \
  serial terminal
# The EFI system partition image El Torito points at.
rm -f "$OUT/efiboot.img"
mkfs.vfat -C -n BERTHEFI -i 12345678 --invariant "$OUT/efiboot.img" 4096 >/dev/null
touch -d "@$SOURCE_DATE_EPOCH" "$I/EFI/BOOT/BOOTX64.EFI"
MTOOLS_SKIP_CHECK=1 mmd -i "$OUT/efiboot.img" ::/EFI ::/EFI/BOOT
MTOOLS_SKIP_CHECK=1 mcopy -m -i "$OUT/efiboot.img" "$I/EFI/BOOT/BOOTX64.EFI" ::/EFI/BOOT/
cp "$OUT/efiboot.img" "$I/boot/efiboot.img"
find "$I" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$OUT/berth.iso"
xorriso -as mkisofs -quiet -o "$OUT/berth.iso" -V BERTH -J -R \
  -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
  -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
  -eltorito-alt-boot -e boot/efiboot.img -no-emul-boot -isohybrid-gpt-basdat \
  "$I" 2>&1 | grep -v '^xorriso : UPDATE\|^$' || true
rm -rf "$I" "$OUT/grub-early.cfg"
