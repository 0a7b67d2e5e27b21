// Package memory is the guest's RAM as the host sees it: anonymous mappings,
// one per contiguous guest-physical range, and the single place where a
// guest-physical address range becomes a host slice.
//
// Everything the guest hands the VMM (descriptor addresses, ring addresses,
// buffer lengths) is untrusted, so Slice checks every range for overflow and
// for lying entirely inside one region before returning memory.
package memory

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The 32-bit PCI hole: RAM never appears in [HoleStart, HoleEnd); RAM that
// does not fit below the hole continues at HoleEnd (4 GiB).
const (
	HoleStart uint64 = 3 << 30
	HoleEnd   uint64 = 4 << 30
)

// HugeAlign is the alignment of every region's host mapping: a 2 MiB huge
// page. KVM maps guest memory with huge pages only where the host address
// and the guest-physical address agree modulo the huge page size, and mmap
// promises an anonymous mapping no more than page alignment.
const HugeAlign = 2 << 20

// ErrOutOfRange is returned (wrapped) for any range not fully inside guest RAM.
var ErrOutOfRange = errors.New("guest address range outside RAM")

// Region is one contiguous range of guest RAM and the host memory behind it.
type Region struct {
	GuestPhys uint64 // first guest-physical address
	Host      []byte // the host mapping; len(Host) is the region size
}

// End is the first guest-physical address after the region.
func (r Region) End() uint64 { return r.GuestPhys + uint64(len(r.Host)) }

// Memory is the guest's RAM. It is safe for concurrent use: the layout never
// changes after New, and the bytes themselves are shared with the guest.
type Memory struct {
	regions []Region
	mapped  bool // regions were mmap'd by New and must be unmapped by Close
}

// New maps size bytes of guest RAM, leaving out the PCI hole. The mappings
// are private, anonymous and MAP_NORESERVE and are never touched here, so
// the host commits memory only as the guest uses it. Each starts on a
// HugeAlign boundary (its guest-physical start is one too) and is advised
// MADV_HUGEPAGE, as QEMU does, so that transparent huge pages back the
// guest wherever the host has them.
func New(size uint64) (*Memory, error) {
	if size == 0 || size%uint64(unix.Getpagesize()) != 0 {
		return nil, fmt.Errorf("guest memory size %d: must be a non-zero multiple of the page size", size)
	}
	layout := []struct{ gpa, size uint64 }{{0, min(size, HoleStart)}}
	if size > HoleStart {
		layout = append(layout, struct{ gpa, size uint64 }{HoleEnd, size - HoleStart})
	}
	m := &Memory{mapped: true}
	for _, l := range layout {
		b, err := mapAligned(l.size)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("map %d MiB of guest memory at %#x: %w", l.size>>20, l.gpa, err)
		}
		m.regions = append(m.regions, Region{GuestPhys: l.gpa, Host: b})
	}
	return m, nil
}

// mapAligned maps size bytes of anonymous memory starting on a HugeAlign
// boundary: it maps HugeAlign more than asked and unmaps the two ends.
// Huge pages are advised; a kernel without them refuses the advice, which
// changes nothing else.
func mapAligned(size uint64) ([]byte, error) {
	total := uintptr(size) + HugeAlign
	p, err := unix.MmapPtr(-1, 0, nil, total, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	base := uintptr(p)
	start := (base + HugeAlign - 1) &^ (HugeAlign - 1)
	end := start + uintptr(size)
	if head := start - base; head > 0 {
		if err := unix.MunmapPtr(p, head); err != nil {
			unix.MunmapPtr(p, total)
			return nil, fmt.Errorf("trim mapping to %d-byte alignment: %w", HugeAlign, err)
		}
	}
	if tail := base + total - end; tail > 0 {
		if err := unix.MunmapPtr(unsafe.Add(p, end-base), tail); err != nil {
			unix.MunmapPtr(unsafe.Add(p, start-base), total-(start-base))
			return nil, fmt.Errorf("trim mapping to %d-byte alignment: %w", HugeAlign, err)
		}
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, start-base)), size)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // EINVAL without CONFIG_TRANSPARENT_HUGEPAGE
	return b, nil
}

// FromRegions wraps caller-owned host memory as guest RAM; Close does not
// free it. Regions must be sorted and must not overlap. It exists for tests
// and tools that lay out guest memory in plain Go slices.
func FromRegions(regions ...Region) (*Memory, error) {
	for i, r := range regions {
		if len(r.Host) == 0 {
			return nil, fmt.Errorf("region %d is empty", i)
		}
		if r.End() < r.GuestPhys {
			return nil, fmt.Errorf("region %d wraps around the address space", i)
		}
		if i > 0 && r.GuestPhys < regions[i-1].End() {
			return nil, fmt.Errorf("region %d overlaps or precedes region %d", i, i-1)
		}
	}
	return &Memory{regions: append([]Region(nil), regions...)}, nil
}

// Regions returns the RAM layout, lowest address first. Callers must not
// retain the Host slices beyond the Memory's lifetime.
func (m *Memory) Regions() []Region { return m.regions }

// Size is the total amount of guest RAM in bytes.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.regions {
		n += uint64(len(r.Host))
	}
	return n
}

// Slice returns the host memory behind the guest-physical range
// [gpa, gpa+n). The range must lie entirely inside one region. n may be 0,
// in which case gpa must still be inside (or at the end of) a region.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	end := gpa + n
	if end < gpa {
		return nil, fmt.Errorf("%w: %#x+%#x overflows", ErrOutOfRange, gpa, n)
	}
	for _, r := range m.regions {
		if gpa >= r.GuestPhys && end <= r.End() {
			off := gpa - r.GuestPhys
			return r.Host[off : off+n : off+n], nil
		}
	}
	return nil, fmt.Errorf("%w: [%#x, %#x)", ErrOutOfRange, gpa, end)
}

// Close unmaps memory mapped by New. It is idempotent.
func (m *Memory) Close() error {
	if !m.mapped {
		return nil
	}
	var errs []error
	for _, r := range m.regions {
		if err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(r.Host)), uintptr(len(r.Host))); err != nil {
			errs = append(errs, fmt.Errorf("unmap guest memory at %#x: %w", r.GuestPhys, err))
		}
	}
	m.regions, m.mapped = nil, false
	return errors.Join(errs...)
}
