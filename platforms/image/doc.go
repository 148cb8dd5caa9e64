// Package image builds the pieces of a bootable Berth image from files
// taken out of Debian packages: the uncompressed kernel ELF (vmlinux) for
// qemu's PVH entry, the closure of kernel modules with a modules.dep, and
// reproducible newc cpio archives for the initramfs.
package image
