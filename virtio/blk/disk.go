package blk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// SectorSize is the virtio-blk sector: capacity and request sectors are
// counted in 512-byte units whatever the block size.
const SectorSize = 512

// SerialLen is VIRTIO_BLK_ID_BYTES, the length of the GET_ID serial.
const SerialLen = 20

// Spec is a --disk argument: PATH[,ro][,serial=ID].
type Spec struct {
	Path     string
	ReadOnly bool
	Serial   string // empty: the file name, cut to SerialLen bytes
}

// ParseDiskSpec parses "PATH[,ro][,serial=ID]". A path containing a comma
// cannot be given (the comma separates options).
func ParseDiskSpec(s string) (Spec, error) {
	parts := strings.Split(s, ",")
	sp := Spec{Path: parts[0]}
	if sp.Path == "" {
		return Spec{}, fmt.Errorf("disk %q: empty path (want PATH[,ro][,serial=ID])", s)
	}
	for _, opt := range parts[1:] {
		switch {
		case opt == "ro":
			sp.ReadOnly = true
		case opt == "rw":
			sp.ReadOnly = false
		case strings.HasPrefix(opt, "serial="):
			sp.Serial = strings.TrimPrefix(opt, "serial=")
			if err := checkSerial(sp.Serial); err != nil {
				return Spec{}, fmt.Errorf("disk %q: %w", s, err)
			}
		default:
			return Spec{}, fmt.Errorf("disk %q: unknown option %q (want ro, rw or serial=ID)", s, opt)
		}
	}
	return sp, nil
}

func checkSerial(s string) error {
	if s == "" || len(s) > SerialLen {
		return fmt.Errorf("serial %q: want 1 to %d bytes", s, SerialLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("serial %q: only printable ASCII without spaces", s)
		}
	}
	return nil
}

// Errors from Open, matched with errors.Is.
var (
	ErrNotDisk   = errors.New("not a regular file or block device")
	ErrDiskSize  = errors.New("size is not a non-zero multiple of 512 bytes")
	ErrDiskInUse = errors.New("disk image is locked by another process")
)

// Disk is an open disk image: a regular file or a block device. It owns the
// file; Close is idempotent. A read-only Disk's file is opened O_RDONLY, so
// no code path can write to it.
type Disk struct {
	f        *os.File
	path     string
	size     uint64 // bytes, a multiple of SectorSize
	readOnly bool
	serial   [SerialLen]byte

	closeOnce sync.Once
	closeErr  error
}

// Open opens and checks the image: it must exist, be a regular file or a
// block device whose size is a non-zero multiple of 512 bytes, and not be
// locked by another user (a shared flock for read-only disks, an exclusive
// one for writable disks, as QEMU does).
func Open(sp Spec) (*Disk, error) {
	if sp.Path == "" {
		return nil, errors.New("open disk: empty path")
	}
	serial := sp.Serial
	if serial == "" {
		serial = filepath.Base(sp.Path)
		if len(serial) > SerialLen {
			serial = serial[:SerialLen]
		}
	} else if err := checkSerial(serial); err != nil {
		return nil, fmt.Errorf("open disk %s: %w", sp.Path, err)
	}
	flag, lock, mode := os.O_RDWR, unix.LOCK_EX, "read-write"
	if sp.ReadOnly {
		flag, lock, mode = os.O_RDONLY, unix.LOCK_SH, "read-only"
	}
	f, err := os.OpenFile(sp.Path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk %s %s: %w", sp.Path, mode, err)
	}
	d := &Disk{f: f, path: sp.Path, readOnly: sp.ReadOnly}
	copy(d.serial[:], serial)
	if err := d.check(lock); err != nil {
		f.Close()
		return nil, fmt.Errorf("open disk %s: %w", sp.Path, err)
	}
	return d, nil
}

func (d *Disk) check(lock int) error {
	fi, err := d.f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	m := fi.Mode()
	isBlock := m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0
	if !m.IsRegular() && !isBlock {
		return fmt.Errorf("%w (mode %v)", ErrNotDisk, m)
	}
	size, err := d.f.Seek(0, io.SeekEnd) // also right for block devices
	if err != nil {
		return fmt.Errorf("find size: %w", err)
	}
	if size <= 0 || size%SectorSize != 0 {
		return fmt.Errorf("%w: %d bytes", ErrDiskSize, size)
	}
	d.size = uint64(size)
	err = d.control(func(fd int) error { return unix.Flock(fd, lock|unix.LOCK_NB) })
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("%w: %w", ErrDiskInUse, err)
	}
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return nil
}

// Path is the image's path as given.
func (d *Disk) Path() string { return d.path }

// Size is the image size in bytes.
func (d *Disk) Size() uint64 { return d.size }

// Sectors is the capacity in 512-byte sectors.
func (d *Disk) Sectors() uint64 { return d.size / SectorSize }

// ReadOnly reports whether the disk was opened read-only.
func (d *Disk) ReadOnly() bool { return d.readOnly }

// Serial is the GET_ID answer: up to 20 bytes, NUL-padded.
func (d *Disk) Serial() [SerialLen]byte { return d.serial }

// Close releases the file (and its lock). It is idempotent.
func (d *Disk) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.f.Close() })
	return d.closeErr
}

// control runs fn with the file's descriptor, which stays valid (not closed
// under fn) for the duration.
func (d *Disk) control(fn func(fd int) error) error {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// maxIOV is IOV_MAX on Linux: the most segments one preadv/pwritev takes.
const maxIOV = 1024

// readAt fills segs, in order, from the image at off with preadv straight
// into them (guest memory: no bounce buffer). It returns an error unless
// every byte was read.
func (d *Disk) readAt(segs [][]byte, off uint64) error {
	return d.vector(segs, off, "read", unix.Preadv)
}

// writeAt writes segs, in order, to the image at off with pwritev.
func (d *Disk) writeAt(segs [][]byte, off uint64) error {
	if d.readOnly {
		return fmt.Errorf("write %s: %w", d.path, ErrReadOnly)
	}
	return d.vector(segs, off, "write", unix.Pwritev)
}

func (d *Disk) vector(segs [][]byte, off uint64, op string, sys func(int, [][]byte, int64) (int, error)) error {
	return d.control(func(fd int) error {
		// Work on a copy of the slice headers: partial transfers trim them.
		var local [8][]byte
		rest := append(local[:0], segs...)
		for len(rest) > 0 {
			if len(rest[0]) == 0 {
				rest = rest[1:]
				continue
			}
			batch := rest[:min(len(rest), maxIOV)]
			n, err := sys(fd, batch, int64(off))
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s %s at offset %d: %w", op, d.path, off, err)
			}
			if n == 0 {
				return fmt.Errorf("%s %s at offset %d: %w", op, d.path, off, io.ErrUnexpectedEOF)
			}
			off += uint64(n)
			for n > 0 {
				k := min(n, len(rest[0]))
				rest[0] = rest[0][k:]
				n -= k
				if len(rest[0]) == 0 {
					rest = rest[1:]
				}
			}
		}
		return nil
	})
}

// flush makes written data durable (fdatasync). A read-only disk has
// nothing of ours to flush.
func (d *Disk) flush() error {
	if d.readOnly {
		return nil
	}
	if err := d.control(unix.Fdatasync); err != nil {
		return fmt.Errorf("flush %s: %w", d.path, err)
	}
	return nil
}
