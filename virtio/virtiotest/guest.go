// Package virtiotest plays the driver's side of virtio split virtqueues in
// plain memory, so device models and their datapaths can be tested without
// KVM: it lays out descriptor tables and rings in a memory.Memory built with
// memory.FromRegions, posts buffers, kicks, and observes the used ring and
// the interrupt eventfd.
//
// Ring indexes and flags are accessed atomically through their aligned
// 32-bit words, the same way virtio/queue does, so tests run clean under the
// race detector. Rings are page aligned with room after them, so those words
// never overlap other data.
package virtiotest

import (
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// Base is the guest-physical address where a Guest's RAM starts: not zero,
// to catch code that confuses offsets with addresses.
const Base = 0x10_0000

// Guest is guest RAM in a Go slice with a bump allocator.
type Guest struct {
	t    testing.TB
	Mem  *memory.Memory
	ram  []byte
	next uint64 // next free guest-physical address
}

// NewGuest makes size bytes of guest RAM at Base.
func NewGuest(t testing.TB, size int) *Guest {
	t.Helper()
	ram := make([]byte, size)
	mem, err := memory.FromRegions(memory.Region{GuestPhys: Base, Host: ram})
	if err != nil {
		t.Fatalf("guest memory: %v", err)
	}
	if uintptr(unsafe.Pointer(&ram[0]))%8 != 0 {
		t.Fatalf("guest memory: host slice not 8-byte aligned")
	}
	return &Guest{t: t, Mem: mem, ram: ram, next: Base}
}

// Alloc reserves n bytes aligned to align (a power of two) and returns
// their guest-physical address. The memory is zeroed.
func (g *Guest) Alloc(n, align uint64) uint64 {
	g.t.Helper()
	gpa := (g.next + align - 1) &^ (align - 1)
	if gpa+n > Base+uint64(len(g.ram)) {
		g.t.Fatalf("virtiotest: guest memory exhausted allocating %d bytes", n)
	}
	g.next = gpa + n
	return gpa
}

// Bytes returns guest memory [gpa, gpa+n).
func (g *Guest) Bytes(gpa, n uint64) []byte {
	g.t.Helper()
	b, err := g.Mem.Slice(gpa, n)
	if err != nil {
		g.t.Fatalf("virtiotest: %v", err)
	}
	return b
}

// Write copies data into guest memory at gpa.
func (g *Guest) Write(gpa uint64, data []byte) { copy(g.Bytes(gpa, uint64(len(data))), data) }

func (g *Guest) word(gpa uint64) (*uint32, uint) {
	b := g.Bytes(gpa&^3, 4)
	return (*uint32)(unsafe.Pointer(unsafe.SliceData(b))), uint(gpa&3) * 8
}

// Load16 reads the 16-bit little-endian ring field at gpa atomically.
func (g *Guest) Load16(gpa uint64) uint16 {
	w, shift := g.word(gpa)
	return uint16(atomic.LoadUint32(w) >> shift)
}

// Store16 writes the 16-bit ring field at gpa atomically.
func (g *Guest) Store16(gpa uint64, v uint16) {
	w, shift := g.word(gpa)
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, old&^(0xffff<<shift)|uint32(v)<<shift) {
			return
		}
	}
}

// NewGuestOn wraps existing guest memory (for layouts NewGuest cannot make,
// such as huge never-touched mappings). Alloc is not available on it.
func NewGuestOn(t testing.TB, mem *memory.Memory) *Guest {
	return &Guest{t: t, Mem: mem}
}
