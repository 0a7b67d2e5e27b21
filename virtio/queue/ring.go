package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

var errHostAlign = errors.New("host mapping of guest RAM is not 4-byte aligned")

// ring is a host view of a driver or device ring, widened to whole aligned
// 32-bit words so the 16-bit fields can be accessed atomically.
type ring struct {
	b    []byte // host memory from base, 4-byte aligned
	skew int    // offset of the ring's first byte within b
}

func newRing(mem *memory.Memory, gpa, n uint64) (ring, error) {
	if _, err := mem.Slice(gpa, n); err != nil {
		return ring{}, fmt.Errorf("%w: %w", ErrRing, err)
	}
	base := gpa &^ 3
	end := (gpa + n + 3) &^ 3
	b, err := mem.Slice(base, end-base)
	if err != nil {
		// Only a region whose size is not a multiple of 4 gets here.
		return ring{}, fmt.Errorf("%w: its aligned 32-bit words are not all in RAM: %w", ErrRing, err)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4 != 0 {
		return ring{}, fmt.Errorf("%w: %w", ErrAlign, errHostAlign)
	}
	return ring{b: b, skew: int(gpa - base)}, nil
}

// word returns the aligned 32-bit word holding the 16-bit field at off and
// the field's bit shift within it.
func (r ring) word(off int) (*uint32, uint) {
	o := off + r.skew
	w := o &^ 3
	// Slicing bounds-checks without reading (a plain read here would race
	// with the driver's atomic writes); newRing widened b to whole words.
	return (*uint32)(unsafe.Pointer(unsafe.SliceData(r.b[w : w+4]))), uint(o&3) * 8
}

// plain16 and putPlain32 access ring entries that are ordered by the
// indexes and need no atomics.
func (r ring) plain16(off int) uint16 {
	return binary.LittleEndian.Uint16(r.b[r.skew+off:])
}

func (r ring) putPlain32(off int, v uint32) {
	binary.LittleEndian.PutUint32(r.b[r.skew+off:], v)
}

// load16 reads the 16-bit field at off atomically.
func (r ring) load16(off int) uint16 {
	w, shift := r.word(off)
	return uint16(atomic.LoadUint32(w) >> shift)
}

// store16 writes the 16-bit field at off atomically, leaving the other half
// of its word (which the driver may be writing) untouched.
func (r ring) store16(off int, v uint16) {
	w, shift := r.word(off)
	for {
		old := atomic.LoadUint32(w)
		nw := old&^(0xffff<<shift) | uint32(v)<<shift
		if atomic.CompareAndSwapUint32(w, old, nw) {
			return
		}
	}
}
