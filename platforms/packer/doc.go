// Package packer holds Berth's Packer template, berth.json (JSON, for
// Debian's packer 1.6.6), and the test that `packer validate` accepts it.
//
// The qemu build boots the kernel and initrd of berth.iso with
// rancher.install.device=/dev/vda on the command line (what the ISO's
// install entry does): PID 1 installs and powers off, and Packer keeps the
// disk as out/packer-qemu/berth.qcow2 (`make packer-qemu`). A shell-local
// step reads the serial console meanwhile and fails the build when the
// install says FAILED (the machine powers off either way). The
// amazon-ebs build (an amazon-ebssurrogate builder) starts a Debian
// instance with a second EBS volume, writes berth-ec2.raw to it and
// registers an AMI whose root device is a snapshot of that volume.
package packer
