// Package cloudimage builds Berth's cloud images from the kernel, small
// initrd and system image of the bootable image: each is a disk installed by
// platforms/install for its platform, then converted to what the cloud
// imports.
//
//	berth-openstack.qcow2  datasources [configdrive, openstack]
//	berth-gce.tar.gz       disk.raw in GCE's tar layout, datasource [gce], console ttyS0
//	berth-ec2.raw          for an EBS snapshot or `aws ec2 import-image`, datasource [ec2], console ttyS0
//	berth-ec2.vmdk         the same as a stream-optimized VMDK
//
// Every GUID, UUID and timestamp comes from the seed and the epoch, so the
// same inputs give the same bytes.
package cloudimage
