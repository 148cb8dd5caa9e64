package configdrive

import (
	"bytes"
	"errors"
	"io"
	"strings"
)

// FS types Probe recognises.
const (
	ISO9660 = "iso9660"
	FAT12   = "fat12"
	FAT16   = "fat16"
	FAT32   = "fat32"
)

// ErrUnknownFS means no ISO9660 or FAT filesystem was recognised.
var ErrUnknownFS = errors.New("no ISO9660 or FAT filesystem")

// Probe reads the filesystem type and volume label from the first
// sectors, as blkid would: the ISO9660 primary volume descriptor at 32 KiB,
// or a FAT boot sector.
func Probe(r io.ReaderAt) (fstype, label string, err error) {
	pvd := make([]byte, 2048)
	if n, _ := r.ReadAt(pvd, 16*2048); n == len(pvd) && pvd[0] == 1 && string(pvd[1:6]) == "CD001" {
		return ISO9660, trim(pvd[40:72]), nil
	}
	bs := make([]byte, 512)
	n, err := r.ReadAt(bs, 0)
	if n < len(bs) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return "", "", err
	}
	if bs[510] != 0x55 || bs[511] != 0xaa {
		return "", "", ErrUnknownFS
	}
	bytesPerSector := int(bs[11]) | int(bs[12])<<8
	if bytesPerSector != 512 && bytesPerSector != 1024 && bytesPerSector != 2048 && bytesPerSector != 4096 {
		return "", "", ErrUnknownFS
	}
	sectorsPerFAT16 := int(bs[22]) | int(bs[23])<<8
	if sectorsPerFAT16 == 0 && bs[66] == 0x29 {
		if !strings.HasPrefix(string(bs[82:90]), "FAT32") {
			return "", "", ErrUnknownFS
		}
		return FAT32, noName(trim(bs[71:82])), nil
	}
	if bs[38] != 0x29 {
		return "", "", ErrUnknownFS
	}
	switch t := string(bs[54:62]); {
	case strings.HasPrefix(t, "FAT12"):
		return FAT12, noName(trim(bs[43:54])), nil
	case strings.HasPrefix(t, "FAT16"):
		return FAT16, noName(trim(bs[43:54])), nil
	}
	return "", "", ErrUnknownFS
}

func trim(b []byte) string {
	return string(bytes.TrimRight(bytes.TrimRight(b, "\x00"), " "))
}

// noName drops FAT's placeholder for "no label".
func noName(l string) string {
	if l == "NO NAME" {
		return ""
	}
	return l
}
