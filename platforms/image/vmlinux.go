package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNotBzImage is returned for input that is not an x86 bzImage with an
// XZ payload.
var ErrNotBzImage = errors.New("not an x86 bzImage with an xz payload")

// Payload returns the compressed kernel inside an x86 bzImage: an xz
// stream (with the x86 BCJ filter, so decompress it with xz(1)) that holds
// the ELF vmlinux. qemu boots an ELF vmlinux through its PVH entry point,
// skipping the in-guest decompressor (about 2 s under TCG).
func Payload(bz []byte) ([]byte, error) {
	// Boot protocol: the setup header has "HdrS" at 0x202, setup_sects at
	// 0x1f1, and payload_offset/payload_length at 0x248/0x24c relative to
	// the start of the protected-mode code.
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, fmt.Errorf("bzImage payload: %w", ErrNotBzImage)
	}
	setup := int(bz[0x1f1])
	if setup == 0 {
		setup = 4
	}
	pm := (setup + 1) * 512
	off := pm + int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if off < 0 || n <= 0 || off+n > len(bz) {
		return nil, fmt.Errorf("bzImage payload %d+%d outside %d bytes: %w", off, n, len(bz), ErrNotBzImage)
	}
	// The stream is followed by the decompressor's trailer; xz
	// --single-stream stops at the end of the stream, so hand it the rest.
	payload := bz[off:]
	if !bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")) {
		return nil, fmt.Errorf("bzImage payload is not xz: %w", ErrNotBzImage)
	}
	return payload, nil
}
