// Command erofslabel sets the volume label of an erofs image, as
// `mkfs.erofs -L LABEL` does in erofs-utils 1.6 and later (Debian bookworm
// ships 1.5, which has no -L), and recomputes the superblock checksum:
//
//	erofslabel IMAGE LABEL
//
// NixOS (microvm.nix) finds its store disk by the label "nix-store".
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
)

// Superblock layout (linux/fs/erofs/erofs_fs.h, struct erofs_super_block).
const (
	superOffset   = 1024
	magic         = 0xE0F5E1E2
	offChecksum   = 4
	offFeatCompat = 8
	offBlkSzBits  = 12
	offVolumeName = 64
	volumeNameLen = 16
	featSBChksum  = 1 << 0 // EROFS_FEATURE_COMPAT_SB_CHKSUM
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: erofslabel IMAGE LABEL")
		os.Exit(2)
	}
	if err := label(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "erofslabel:", err)
		os.Exit(1)
	}
}

func label(path, name string) error {
	if len(name) == 0 || len(name) > volumeNameLen {
		return fmt.Errorf("label %q: want 1 to %d bytes", name, volumeNameLen)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, superOffset+128)
	if _, err := f.ReadAt(head, 0); err != nil {
		return fmt.Errorf("read superblock of %s: %w", path, err)
	}
	sb := head[superOffset:]
	if binary.LittleEndian.Uint32(sb) != magic {
		return errors.New(path + ": not an erofs image (no superblock magic at 1024)")
	}
	bits := sb[offBlkSzBits]
	if bits < 9 || bits > 16 {
		return fmt.Errorf("%s: block size 2^%d out of range", path, bits)
	}
	// The checksum covers the superblock's block from offset 1024 on.
	blk := make([]byte, (1<<bits)-superOffset)
	if _, err := f.ReadAt(blk, superOffset); err != nil {
		return fmt.Errorf("read superblock block of %s: %w", path, err)
	}
	clear(blk[offVolumeName : offVolumeName+volumeNameLen])
	copy(blk[offVolumeName:], name)
	if binary.LittleEndian.Uint32(blk[offFeatCompat:])&featSBChksum != 0 {
		binary.LittleEndian.PutUint32(blk[offChecksum:], 0)
		// The kernel computes crc32c(~0, ...) without the final inversion.
		sum := ^crc32.Checksum(blk, crc32.MakeTable(crc32.Castagnoli))
		binary.LittleEndian.PutUint32(blk[offChecksum:], sum)
	}
	if _, err := f.WriteAt(blk, superOffset); err != nil {
		return fmt.Errorf("write superblock of %s: %w", path, err)
	}
	return f.Sync()
}
