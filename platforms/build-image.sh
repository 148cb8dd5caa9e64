#!/bin/bash
# Builds Berth's bootable image from Debian packages (apt-get download +
# dpkg-deb -x, nothing installed on the build machine) into $OUT:
#   vmlinuz       the Debian kernel (bzImage)
#   vmlinux       the same kernel as an ELF, for qemu's faster PVH boot
#   initrd.small  LZ4 cpio: ros as /init, busybox, the kernel modules that
#                 reach the system image
#   system.sqfs   LZ4 squashfs (SQFS_COMP=zstd for a smaller one) mounted
#                 at /usr: every kernel module
#                 (lib/modules), dockerd, containerd, runc,
#                 tini, their libraries, the system image tarballs, and
#                 the installer's tools (grub-mkimage + modules, mkfs.fat,
#                 mtools, mke2fs, debugfs)
#   initrd        a cpio holding system.sqfs + initrd.small (for -initrd boots)
#   berth.iso     BIOS (isolinux) + UEFI (grub) bootable ISO
# Reproducible: every timestamp is SOURCE_DATE_EPOCH (default: the commit
# time), every list is sorted. Usage: platforms/build-image.sh [ROS_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
ROS=${1:-bin/ros}
OUT=${OUT:-out/image}
CACHE=${CACHE:-out/cache}
GO=${GO:-go}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
export LC_ALL=C TZ=UTC
log() { printf '[image %s] %s\n' "$(date +%T)" "$*" >&2; }

# The kernel modules Berth's job needs (in the system image); their
# dependencies come along. A
# name ending in / is a directory of the kernel's tree: every module in it.
# PID 1 loads bootstrap.DefaultModules at boot; the rest load when the
# kernel asks for them (/sbin/modprobe is ros, resolving modules.alias):
# netfilter for User Docker's NAT and published ports, kube-proxy, ipvs.
MODULES=(
  virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng virtio_console
  ata_piix ahci ata_generic sd_mod sr_mod
  ext4 crc32c_generic crc32c_intel isofs vfat nls_utf8 nls_cp437 nls_iso8859_1
  squashfs loop overlay
  bridge br_netfilter veth 8021q bonding tun macvlan vxlan
  nf_nat nf_conntrack xt_conntrack xt_addrtype xt_MASQUERADE iptable_nat iptable_filter
  button evdev xfrm_user nfnetlink zram
  kernel/net/netfilter/ kernel/net/ipv4/netfilter/ kernel/net/ipv6/netfilter/ kernel/net/bridge/netfilter/
  ena nvme  # EC2 Nitro: the ENA NIC and EBS volumes as NVMe (nvme_core comes along)
  xen_blkfront xen_netfront  # EC2 on Xen (t2, m4, ...): xvda and the netfront NIC
)
# Engine binaries (paths inside the packages, under usr/); they go to the
# squashfs with the libraries ldd finds for them.
ENGINE_BINS=(
  sbin/dockerd bin/docker sbin/docker-proxy bin/docker-init bin/tini-static bin/tini
  bin/containerd bin/containerd-shim-runc-v2 sbin/runc bin/runc
)

mkdir -p "$OUT" "$CACHE/debs"
MKIMAGE=$CACHE/mkimage
$GO build -trimpath -o "$MKIMAGE" ./platforms/cmd/mkimage

# ---- fetch and extract the packages (cached)
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KPKG" ] || { echo "cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
PKGS=("$KPKG" busybox-static docker.io containerd runc tini e2fsprogs
  grub-common grub-pc-bin grub-efi-amd64-bin dosfstools mtools)
for p in "${PKGS[@]}"; do
  if [ ! -d "$CACHE/pkg/$p" ]; then
    log "fetch $p"
    rm -rf "$CACHE/debs/$p"; mkdir -p "$CACHE/debs/$p"
    (cd "$CACHE/debs/$p" && apt-get download -q "$p" >/dev/null 2>&1 || apt-get download "$p")
    rm -rf "$CACHE/pkg/$p.tmp"; mkdir -p "$CACHE/pkg/$p.tmp"
    dpkg-deb -x "$CACHE/debs/$p"/*.deb "$CACHE/pkg/$p.tmp"
    mv "$CACHE/pkg/$p.tmp" "$CACHE/pkg/$p"
  fi
done
KROOT=$CACHE/pkg/$KPKG
KVER=$(ls "$KROOT/lib/modules")

# ---- kernel
cp -p "$KROOT/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
if [ ! -s "$OUT/vmlinux" ] || [ "$OUT/vmlinuz" -nt "$OUT/vmlinux" ]; then
  log "vmlinux from bzImage"
  "$MKIMAGE" vmlinux "$OUT/vmlinuz" "$OUT/vmlinux"
fi

# ---- initrd.small: ros, busybox, modules
R=$OUT/initrd.d
rm -rf "$R"; mkdir -p "$R"
(cd "$R" && mkdir -p bin sbin dev proc sys run tmp etc var usr root berth lib/modules home mnt opt)
chmod 1777 "$R/tmp"; chmod 700 "$R/root"
install -m 755 "$ROS" "$R/bin/ros"
ln -s bin/ros "$R/init"
for n in init poweroff reboot halt modprobe; do ln -s ../bin/ros "$R/sbin/$n"; done
for n in system-docker respawn cloud-init-execute cloud-init-save netconf modprobe wait-for-docker; do ln -s ros "$R/bin/$n"; done
install -m 755 "$CACHE/pkg/busybox-static/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list | sort); do
  case "$a" in init|linuxrc|poweroff|reboot|halt|busybox) continue ;; esac
  [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
ln -s usr/lib64 "$R/lib64"
ln -s ../usr/lib/x86_64-linux-gnu "$R/lib/x86_64-linux-gnu"
# Only what PID 1 loads before the system image's modules are bound over
# /lib/modules (bootstrap.BootModules: the CD-ROM, disk and loop drivers,
# squashfs, then the default drivers, filesystems and bridge); every
# module sits in the system image, and the initramfs's copies are removed
# once loaded, so no module keeps RAM in the root tmpfs.
"$MKIMAGE" modules -boot "$KROOT/lib/modules/$KVER" "$R/lib/modules/$KVER" 2>"$OUT/modules.log" || { cat "$OUT/modules.log" >&2; exit 1; }
cat > "$R/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
rancher:x:1100:1100:rancher:/home/rancher:/bin/sh
docker:x:1101:1101::/nonexistent:/bin/false
P
cat > "$R/etc/group" <<'G'
root:x:0:
docker:x:1101:rancher
rancher:x:1100:
G
cp "$CACHE/pkg/e2fsprogs/etc/mke2fs.conf" "$R/etc/mke2fs.conf"
printf 'root:*:1::::::\nrancher:*:1::::::\n' > "$R/etc/shadow"; chmod 600 "$R/etc/shadow"
cat > "$R/etc/os-release" <<O
NAME="Berth"
ID=berth
ID_LIKE=rancheros
VERSION_ID=${VERSION:-$(git describe --tags --always 2>/dev/null || echo dev)}
PRETTY_NAME="Berth"
O
echo "$KVER" > "$R/etc/berth-kernel"
log "initrd.small"
"$MKIMAGE" cpio -lz4 "$R" "$OUT/initrd.small"

# ---- system.sqfs: engines + libraries + system images, mounted at /usr
S=$OUT/system.d
rm -rf "$S"; mkdir -p "$S/bin" "$S/sbin" "$S/lib/x86_64-linux-gnu" "$S/lib64" "$S/share/berth/images"
for b in "${ENGINE_BINS[@]}"; do
  for p in docker.io containerd runc tini; do
    src=$CACHE/pkg/$p/usr/$b
    if [ -e "$src" ] || [ -L "$src" ]; then cp -a "$src" "$S/$b"; fi
  done
  [ -e "$S/$b" ] || [ -L "$S/$b" ] || { echo "missing engine binary usr/$b" >&2; exit 1; }
done
"$MKIMAGE" modules "$KROOT/lib/modules/$KVER" "$S/lib/modules/$KVER" "${MODULES[@]}" 2>>"$OUT/modules.log" || { cat "$OUT/modules.log" >&2; exit 1; }
# ext4 tools for the state disk (busybox's mke2fs makes only ext2).
for b in mke2fs e2fsck resize2fs; do cp "$CACHE/pkg/e2fsprogs/sbin/$b" "$S/sbin/$b"; done
ln -s mke2fs "$S/sbin/mkfs.ext4"; ln -s e2fsck "$S/sbin/fsck.ext4"
# What `ros install` (and the unattended install of the ISO's install
# entry) runs: GRUB's image maker and its BIOS and UEFI modules (not the
# prebuilt monolithic EFI binaries, 15 MB nobody here uses), the FAT tools
# for the EFI system partition, debugfs for the state partition's times.
cp "$CACHE/pkg/grub-common/usr/bin/grub-mkimage" "$S/bin/grub-mkimage"
mkdir -p "$S/lib/grub"
for d in i386-pc x86_64-efi; do
  for p in grub-pc-bin grub-efi-amd64-bin; do
    [ -d "$CACHE/pkg/$p/usr/lib/grub/$d" ] && cp -a "$CACHE/pkg/$p/usr/lib/grub/$d" "$S/lib/grub/$d"
  done
  [ -d "$S/lib/grub/$d" ] || { echo "missing GRUB modules usr/lib/grub/$d" >&2; exit 1; }
done
rm -rf "$S/lib/grub/x86_64-efi/monolithic"
cp "$CACHE/pkg/dosfstools/sbin/mkfs.fat" "$S/sbin/mkfs.fat" 2>/dev/null || cp "$CACHE/pkg/dosfstools/usr/sbin/mkfs.fat" "$S/sbin/mkfs.fat"
cp "$CACHE/pkg/mtools/usr/bin/mtools" "$S/bin/mtools"
for b in mcopy mdir mmd; do ln -s mtools "$S/bin/$b"; done
# mtools converts file names through iconv to the DOS code page 850: the
# one glibc gconv module that needs, from the libc the libraries come from.
G=/usr/lib/x86_64-linux-gnu/gconv
mkdir -p "$S/lib/x86_64-linux-gnu/gconv"
cp "$G/IBM850.so" "$S/lib/x86_64-linux-gnu/gconv/"
printf 'alias\tCP850//\tIBM850//\nmodule\tIBM850//\tINTERNAL\tIBM850\t1\nmodule\tINTERNAL\tIBM850//\tIBM850\t1\n' \
  > "$S/lib/x86_64-linux-gnu/gconv/gconv-modules"
cp "$CACHE/pkg/e2fsprogs/sbin/debugfs" "$S/sbin/debugfs"
for b in $(cd "$S" && find bin sbin -type f | sort); do
  ldd "$S/$b" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' || true
done | sort -u | while read -r lib; do
  case "$lib" in
    */ld-linux-x86-64.so.2) cp -L "$lib" "$S/lib64/ld-linux-x86-64.so.2" ;;
    *) cp -L "$lib" "$S/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
  esac
done
# The OS's images (`make sysimages`) as an image store: PID 1 seeds System
# Docker's data root from it (on RAM boots the layer's files stay here),
# so no boot unpacks a `docker load`.
SYSIMAGES=${SYSIMAGES:-out/images}
if [ -s "$SYSIMAGES/store/store.json" ]; then
  cp -a "$SYSIMAGES/store" "$S/share/berth/images/store"
else
  log "no system image store in $SYSIMAGES (make sysimages): System Docker will have no services"
fi
find "$S" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
log "system.sqfs ($(du -sh "$S" | cut -f1) uncompressed)"
rm -f "$OUT/system.sqfs"
# LZ4 (high compression, fast to decompress) by default: System Docker
# and User Docker wait on the decompression of 162 MiB of engine binaries
# and images. Seven pairs of alternating 1 GiB EC2 boots under TCG: User
# Docker answered at a median 15.4 s with LZ4 and 16.9 s with zstd level
# 15, the CPUs busy about 20 s instead of 22-24 s. zstd makes the image 24 MB
# smaller (74 MB, not 98), which is what a machine booted with the whole
# initrd keeps in RAM: SQFS_COMP=zstd for that one in a small guest.
case "${SQFS_COMP:-lz4}" in
  lz4)  COMP=(-comp lz4 -Xhc) ;;
  zstd) COMP=(-comp zstd -Xcompression-level "${SQFS_LEVEL:-15}") ;;
  *)    echo "SQFS_COMP=${SQFS_COMP}: want lz4 or zstd" >&2; exit 2 ;;
esac
env -u SOURCE_DATE_EPOCH mksquashfs "$S" "$OUT/system.sqfs" "${COMP[@]}" -b ${SQFS_BLOCK:-128K} \
  -all-root -no-xattrs -noappend -quiet -no-progress \
  -mkfs-time "$SOURCE_DATE_EPOCH" -all-time "$SOURCE_DATE_EPOCH" >/dev/null

# ---- initrd: a cpio holding the squashfs (already compressed), then initrd.small
Q=$OUT/sqfs.d
rm -rf "$Q"; mkdir -p "$Q/berth"
ln "$OUT/system.sqfs" "$Q/berth/system.sqfs" 2>/dev/null || cp "$OUT/system.sqfs" "$Q/berth/system.sqfs"
"$MKIMAGE" cpio "$Q" "$OUT/system.cpio"
# The kernel unpacks concatenated archives in turn, but an LZ4 one only as
# the last: its decoder reads to the end of the initrd, and fails on
# anything after it ("Initramfs unpacking failed: Decoding failed", and the
# system image is left out). So the plain cpio (a multiple of 4 bytes, as
# the next archive must start 4-byte aligned) comes first.
cp "$OUT/system.cpio" "$OUT/initrd.tmp"
pad=$(( (4 - $(stat -c %s "$OUT/initrd.tmp") % 4) % 4 ))
head -c "$pad" /dev/zero >> "$OUT/initrd.tmp"
cat "$OUT/initrd.small" >> "$OUT/initrd.tmp"
mv "$OUT/initrd.tmp" "$OUT/initrd"
rm -rf "$Q" "$OUT/system.cpio"

if [ "${NO_ISO:-}" != 1 ]; then
  platforms/build-iso.sh "$OUT"
fi
log "done: $(cd "$OUT" && ls -l vmlinuz vmlinux initrd.small system.sqfs initrd $( [ -f berth.iso ] && echo berth.iso) | awk '{printf "%s=%s ", $9, $5}')"
