package blk

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// Request types (struct virtio_blk_req.type, virtio 1.2 §5.2.6).
const (
	TypeIn    = 0 // VIRTIO_BLK_T_IN: read
	TypeOut   = 1 // VIRTIO_BLK_T_OUT: write
	TypeFlush = 4 // VIRTIO_BLK_T_FLUSH
	TypeGetID = 8 // VIRTIO_BLK_T_GET_ID
)

// Status values written in the request's last byte.
const (
	StatusOK     = 0 // VIRTIO_BLK_S_OK
	StatusIOErr  = 1 // VIRTIO_BLK_S_IOERR
	StatusUnsupp = 2 // VIRTIO_BLK_S_UNSUPP
)

// HeaderSize is the device-readable header: le32 type, le32 reserved, le64 sector.
const HeaderSize = 16

// Request errors. ErrNoStatus wraps queue.ErrMalformed: without a writable
// status byte the request cannot be completed, so the queue is broken. The
// others are answered with VIRTIO_BLK_S_IOERR (ErrUnsupported with UNSUPP).
var (
	ErrNoStatus    = errors.New("request has no device-writable status byte")
	ErrShortHeader = errors.New("request header shorter than 16 bytes")
	ErrDirection   = errors.New("data buffer direction wrong for the request type")
	ErrUnaligned   = errors.New("data length not a multiple of 512")
	ErrRange       = errors.New("sector range outside the disk")
	ErrReadOnly    = errors.New("write to a read-only disk")
	ErrIDLength    = errors.New("GET_ID buffer shorter than 20 bytes")
	ErrUnsupported = errors.New("unsupported request type")
)

// request is a parsed virtio_blk_req. The framing of the chain is free
// (virtio 1.2 §2.6.4): the header is the first 16 readable bytes, wherever
// descriptors split them; the status is the last writable byte; the data
// is what lies between (readable for OUT, writable for IN and GET_ID).
type request struct {
	typ    uint32
	sector uint64
	status []byte   // one byte of guest memory
	data   [][]byte // data segments aliasing guest memory
	len    uint64   // total bytes in data
}

// parse validates c against a disk of the given number of sectors. data is
// reused for the segment list. The header is copied out of guest memory
// once, so a driver rewriting it meanwhile changes nothing.
func parse(c *queue.Chain, sectors uint64, readOnly bool, data [][]byte) (request, error) {
	r := request{data: data[:0]}
	if c.WriteLen == 0 {
		return r, fmt.Errorf("%w: %w: chain at head %d", queue.ErrMalformed, ErrNoStatus, c.Head)
	}
	last := c.Writable[len(c.Writable)-1] // the chain omits empty segments
	r.status = last[len(last)-1:]
	if c.ReadLen < HeaderSize {
		return r, fmt.Errorf("%w: %d bytes", ErrShortHeader, c.ReadLen)
	}
	var hdr [HeaderSize]byte
	gather(hdr[:], c.Readable)
	r.typ = binary.LittleEndian.Uint32(hdr[0:])
	r.sector = binary.LittleEndian.Uint64(hdr[8:])
	readData := uint64(c.ReadLen) - HeaderSize
	writeData := uint64(c.WriteLen) - 1
	switch r.typ {
	case TypeIn, TypeGetID:
		if readData != 0 {
			return r, fmt.Errorf("%w: type %d with %d device-readable data bytes", ErrDirection, r.typ, readData)
		}
		r.data, r.len = span(r.data, c.Writable, 0, writeData), writeData
	case TypeOut:
		if writeData != 0 {
			return r, fmt.Errorf("%w: write with %d device-writable data bytes", ErrDirection, writeData)
		}
		r.data, r.len = span(r.data, c.Readable, HeaderSize, readData), readData
	case TypeFlush:
		if readData != 0 || writeData != 0 {
			return r, fmt.Errorf("%w: flush with %d readable and %d writable data bytes", ErrDirection, readData, writeData)
		}
		return r, nil
	default:
		return r, fmt.Errorf("%w: %d", ErrUnsupported, r.typ)
	}
	if r.typ == TypeGetID {
		if r.len < SerialLen {
			return r, fmt.Errorf("%w: %d bytes", ErrIDLength, r.len)
		}
		return r, nil
	}
	if r.len%SectorSize != 0 {
		return r, fmt.Errorf("%w: %d bytes", ErrUnaligned, r.len)
	}
	// sector + count may not wrap and must stay within the disk.
	if n := r.len / SectorSize; r.sector > sectors || n > sectors-r.sector {
		return r, fmt.Errorf("%w: sectors %d+%d, disk has %d", ErrRange, r.sector, n, sectors)
	}
	if r.typ == TypeOut && readOnly {
		return r, ErrReadOnly
	}
	return r, nil
}

// statusFor maps a parse or I/O error to the status byte.
func statusFor(err error) byte {
	switch {
	case err == nil:
		return StatusOK
	case errors.Is(err, ErrUnsupported):
		return StatusUnsupp
	default:
		return StatusIOErr
	}
}

// gather copies the first len(dst) bytes of segs into dst.
func gather(dst []byte, segs [][]byte) {
	n := 0
	for _, s := range segs {
		if n == len(dst) {
			return
		}
		n += copy(dst[n:], s)
	}
}

// span appends to dst the sub-slices of segs covering bytes [off, off+n).
func span(dst [][]byte, segs [][]byte, off, n uint64) [][]byte {
	for _, s := range segs {
		if n == 0 {
			break
		}
		l := uint64(len(s))
		if off >= l {
			off -= l
			continue
		}
		s = s[off:]
		off = 0
		if uint64(len(s)) > n {
			s = s[:n]
		}
		dst = append(dst, s)
		n -= uint64(len(s))
	}
	return dst
}
