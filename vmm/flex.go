package vmm

import (
	"unsafe"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

// Several KVM ioctls take a header followed by a flexible array of entries
// (kvm_cpuid2, kvm_msrs, kvm_irq_routing). flexBuffer lays one out in a
// single 8-byte-aligned Go allocation so the kernel sees the C layout.
type flexBuffer[H, E any] struct {
	words []uint64
	n     int
}

func newFlexBuffer[H, E any](n int) flexBuffer[H, E] {
	size := unsafe.Sizeof(*new(H)) + uintptr(n)*unsafe.Sizeof(*new(E))
	return flexBuffer[H, E]{words: make([]uint64, (size+7)/8), n: n}
}

func (b flexBuffer[H, E]) ptr() unsafe.Pointer { return unsafe.Pointer(&b.words[0]) }

func (b flexBuffer[H, E]) header() *H { return (*H)(b.ptr()) }

func (b flexBuffer[H, E]) slots() []E {
	if b.n == 0 {
		return nil
	}
	return unsafe.Slice((*E)(unsafe.Add(b.ptr(), unsafe.Sizeof(*new(H)))), b.n)
}

type cpuidBuffer struct {
	flexBuffer[uapi.KvmCpuid2, uapi.KvmCpuidEntry2]
}

func newCPUIDBuffer(n int) cpuidBuffer {
	b := cpuidBuffer{newFlexBuffer[uapi.KvmCpuid2, uapi.KvmCpuidEntry2](n)}
	b.header().Nent = uint32(n)
	return b
}

// entries copies out the entries the kernel filled in (Nent).
func (b cpuidBuffer) entries() CPUID {
	n := min(int(b.header().Nent), b.n)
	return append(CPUID(nil), b.slots()[:n]...)
}

func cpuidBufferFrom(c CPUID) cpuidBuffer {
	b := newCPUIDBuffer(len(c))
	copy(b.slots(), c)
	return b
}

func msrsBufferFrom(entries []uapi.KvmMsrEntry) flexBuffer[uapi.KvmMsrs, uapi.KvmMsrEntry] {
	b := newFlexBuffer[uapi.KvmMsrs, uapi.KvmMsrEntry](len(entries))
	b.header().Nmsrs = uint32(len(entries))
	copy(b.slots(), entries)
	return b
}

func routingBufferFrom(entries []uapi.KvmIrqRoutingEntry) flexBuffer[uapi.KvmIrqRouting, uapi.KvmIrqRoutingEntry] {
	b := newFlexBuffer[uapi.KvmIrqRouting, uapi.KvmIrqRoutingEntry](len(entries))
	b.header().Nr = uint32(len(entries))
	copy(b.slots(), entries)
	return b
}
