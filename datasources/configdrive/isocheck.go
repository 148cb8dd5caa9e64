package configdrive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Limits of a sane config drive; go-diskfs allocates whatever sizes the
// image claims, so a corrupt drive could otherwise take gigabytes of
// memory during boot (found by FuzzRead).
const (
	maxDirSize   = 16 << 20
	maxRecords   = 100_000
	maxDirDepth  = 32
	isoBlockSize = 2048
)

// checkISO walks the volume descriptors and every directory tree of an
// ISO9660 image (primary and Joliet) and refuses one whose path tables,
// directory extents or Rock Ridge continuation areas lie outside the image
// or are absurdly large, before go-diskfs reads it.
func checkISO(r io.ReaderAt, size int64) error {
	records := 0
	for i := int64(16); i < 16+64; i++ {
		vd := make([]byte, isoBlockSize)
		if _, err := r.ReadAt(vd, i*isoBlockSize); err != nil {
			return fmt.Errorf("check iso9660: volume descriptor %d: %w", i, err)
		}
		if string(vd[1:6]) != "CD001" {
			return fmt.Errorf("check iso9660: volume descriptor %d: no CD001 signature", i)
		}
		switch vd[0] {
		case 255:
			return nil
		case 1, 2:
			ptSize := int64(binary.LittleEndian.Uint32(vd[132:136]))
			ptLoc := int64(binary.LittleEndian.Uint32(vd[140:144]))
			if ptSize > maxDirSize || ptLoc*isoBlockSize+ptSize > size {
				return fmt.Errorf("check iso9660: path table of %d bytes at block %d lies outside the %d-byte image", ptSize, ptLoc, size)
			}
			if err := checkRecord(r, size, vd[156:156+34], 0, &records); err != nil {
				return fmt.Errorf("check iso9660: %w", err)
			}
		}
	}
	return errors.New("check iso9660: no volume descriptor set terminator")
}

// checkRecord checks one directory record and, for a directory, its
// children.
func checkRecord(r io.ReaderAt, size int64, rec []byte, depth int, records *int) error {
	*records++
	if *records > maxRecords {
		return fmt.Errorf("more than %d directory records", maxRecords)
	}
	if len(rec) < 34 {
		return fmt.Errorf("directory record of %d bytes", len(rec))
	}
	lba := int64(binary.LittleEndian.Uint32(rec[2:6]))
	dlen := int64(binary.LittleEndian.Uint32(rec[10:14]))
	if lba*isoBlockSize+dlen > size {
		return fmt.Errorf("extent of %d bytes at block %d lies outside the %d-byte image", dlen, lba, size)
	}
	if err := checkSystemUse(rec, size); err != nil {
		return err
	}
	if rec[25]&2 == 0 {
		return nil
	}
	if depth > maxDirDepth {
		return fmt.Errorf("directories nested deeper than %d", maxDirDepth)
	}
	if dlen > maxDirSize {
		return fmt.Errorf("directory of %d bytes", dlen)
	}
	dir := make([]byte, dlen)
	if _, err := r.ReadAt(dir, lba*isoBlockSize); err != nil {
		return fmt.Errorf("read directory at block %d: %w", lba, err)
	}
	for pos := 0; pos < len(dir); {
		n := int(dir[pos])
		if n == 0 {
			// Records do not cross sectors; the rest of this one is padding.
			pos = (pos/isoBlockSize + 1) * isoBlockSize
			continue
		}
		if n < 34 || pos+n > len(dir) {
			return fmt.Errorf("directory at block %d: bad record length %d at %d", lba, n, pos)
		}
		child := dir[pos : pos+n]
		pos += n
		nameLen := int(child[32])
		if nameLen == 1 && (child[33] == 0 || child[33] == 1) {
			// "." and "..": check their system use, not their extent again.
			if err := checkSystemUse(child, size); err != nil {
				return err
			}
			continue
		}
		if err := checkRecord(r, size, child, depth+1, records); err != nil {
			return err
		}
	}
	return nil
}

// checkSystemUse checks the Rock Ridge continuation (CE) entries of a
// record's system use area.
func checkSystemUse(rec []byte, size int64) error {
	nameLen := int(rec[32])
	pos := 33 + nameLen
	if nameLen%2 == 0 {
		pos++
	}
	for pos+4 <= len(rec) {
		l := int(rec[pos+2])
		if l < 4 || pos+l > len(rec) {
			return nil // not SUSP data; go-diskfs reports what it cannot parse
		}
		if string(rec[pos:pos+2]) == "CE" && l >= 28 {
			blk := int64(binary.LittleEndian.Uint32(rec[pos+4 : pos+8]))
			off := int64(binary.LittleEndian.Uint32(rec[pos+12 : pos+16]))
			n := int64(binary.LittleEndian.Uint32(rec[pos+20 : pos+24]))
			if n > maxDirSize || blk*isoBlockSize+off+n > size {
				return fmt.Errorf("rock ridge continuation of %d bytes at block %d lies outside the %d-byte image", n, blk, size)
			}
		}
		pos += l
	}
	return nil
}

// maxFATTable bounds one FAT table: a config drive's is a few KiB.
const maxFATTable = 64 << 20

// checkFAT refuses a FAT boot sector whose tables would not fit in the
// image: go-diskfs allocates sectors-per-FAT times bytes-per-sector as
// the boot sector claims, up to gigabytes on FAT32.
func checkFAT(r io.ReaderAt, size int64, fstype string) error {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return fmt.Errorf("check %s: boot sector: %w", fstype, err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:13]))
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	fats := int64(bs[16])
	spf := int64(binary.LittleEndian.Uint16(bs[22:24]))
	if fstype == FAT32 {
		spf = int64(binary.LittleEndian.Uint32(bs[36:40]))
	}
	if bs[13] == 0 || fats == 0 {
		return fmt.Errorf("check %s: no sectors per cluster or no FATs", fstype)
	}
	table := spf * bps
	if table > maxFATTable || reserved*bps+fats*table > size {
		return fmt.Errorf("check %s: %d FATs of %d bytes after %d reserved sectors lie outside the %d-byte image",
			fstype, fats, table, reserved, size)
	}
	return nil
}

// checkFATChains refuses a FAT whose cluster chains loop: go-diskfs
// follows a chain until its end-of-chain mark, so a loop would grow a
// list until memory ran out. Run after checkFAT, which bounds the table.
func checkFATChains(r io.ReaderAt, fstype string) error {
	bs := make([]byte, 512)
	if _, err := r.ReadAt(bs, 0); err != nil {
		return fmt.Errorf("check %s: boot sector: %w", fstype, err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:13]))
	reserved := int64(binary.LittleEndian.Uint16(bs[14:16]))
	spf := int64(binary.LittleEndian.Uint16(bs[22:24]))
	if fstype == FAT32 {
		spf = int64(binary.LittleEndian.Uint32(bs[36:40]))
	}
	table := make([]byte, spf*bps)
	if _, err := r.ReadAt(table, reserved*bps); err != nil {
		return fmt.Errorf("check %s: read FAT: %w", fstype, err)
	}
	var n int
	var next func(c int) uint32
	var eoc uint32
	switch fstype {
	case FAT12:
		n, eoc = len(table)*2/3, 0xff8
		next = func(c int) uint32 {
			v := uint32(binary.LittleEndian.Uint16(table[c*3/2:]))
			if c%2 == 1 {
				return v >> 4
			}
			return v & 0xfff
		}
	case FAT16:
		n, eoc = len(table)/2, 0xfff8
		next = func(c int) uint32 { return uint32(binary.LittleEndian.Uint16(table[c*2:])) }
	default:
		n, eoc = len(table)/4, 0x0ffffff8
		next = func(c int) uint32 { return binary.LittleEndian.Uint32(table[c*4:]) & 0x0fffffff }
	}
	if fstype == FAT12 && n > 0 && (n-1)*3/2+2 > len(table) {
		n-- // the last packed entry would read past the table
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]uint8, n)
	for start := 2; start < n; start++ {
		if state[start] != unseen {
			continue
		}
		c := start
		var path []int
		for c >= 2 && c < n && state[c] == unseen {
			state[c] = onPath
			path = append(path, c)
			v := next(c)
			if v == 0 || v >= eoc {
				c = -1 // the chain ends
				break
			}
			c = int(v)
		}
		if c >= 2 && c < n && state[c] == onPath {
			return fmt.Errorf("check %s: cluster chain loops at cluster %d", fstype, c)
		}
		for _, p := range path {
			state[p] = done
		}
	}
	return nil
}
