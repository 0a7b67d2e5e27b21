package vmm

import (
	"fmt"
	"math/bits"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

// CPUID is a list of CPUID leaves as KVM_GET_SUPPORTED_CPUID returns them
// and KVM_SET_CPUID2 takes them.
type CPUID []uapi.KvmCpuidEntry2

// Leaves hlsvmm looks at or patches.
const (
	leafVendor          = 0x0
	leafFeatures        = 0x1
	leafCacheParams     = 0x4 // Intel deterministic cache parameters
	leafExtTopology     = 0xb
	leafExtTopologyV2   = 0x1f
	leafKVMSignature    = 0x40000000
	leafKVMFeatures     = 0x40000001
	leafExtMax          = 0x80000000
	leafAMDSizes        = 0x80000008
	leafAMDCacheTopo    = 0x8000001d
	leafAMDExtendedAPIC = 0x8000001e
)

// Bits in the leaves above.
const (
	cpuid1ECXTSCDeadline = 1 << 24
	cpuid1ECXHypervisor  = 1 << 31
	cpuid1EDXHTT         = 1 << 28

	topologyTypeSMT  = 1 // CPUID.0BH:ECX[15:8] domain types
	topologyTypeCore = 2
)

// Find returns the entry for function fn and sub-leaf index (ignored for
// leaves whose index is not significant), or nil.
func (c CPUID) Find(fn, index uint32) *uapi.KvmCpuidEntry2 {
	for i := range c {
		e := &c[i]
		if e.Function != fn {
			continue
		}
		if e.Flags&uapi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0 || e.Index == index {
			return e
		}
	}
	return nil
}

// Vendor is the 12-byte vendor string of leaf 0 ("GenuineIntel", "AuthenticAMD").
func (c CPUID) Vendor() string {
	e := c.Find(leafVendor, 0)
	if e == nil {
		return ""
	}
	b := make([]byte, 0, 12)
	for _, r := range []uint32{e.EBX, e.EDX, e.ECX} {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return string(b)
}

// HasKVMLeaves reports whether the KVM paravirtual leaves (signature
// "KVMKVMKVM\0\0\0" at 0x40000000) are present: without them Linux uses
// neither kvm-clock nor the other paravirtual features.
func (c CPUID) HasKVMLeaves() bool {
	e := c.Find(leafKVMSignature, 0)
	return e != nil && e.EBX == 0x4b4d564b && e.ECX == 0x564b4d56 && e.EDX == 0x4d
}

// Topology describes the vCPU a CPUID is patched for.
type Topology struct {
	APICID      uint32 // this vCPU's (x2)APIC id; hlsvmm uses the vCPU index
	CPUs        int    // vCPUs in the machine: one socket, one thread per core
	TSCDeadline bool   // the in-kernel LAPIC emulates the TSC-deadline timer
}

// ForVCPU returns a copy of c (the host's supported CPUID) patched for one
// vCPU: its APIC id in leaf 1 and the x2APIC topology leaves, one socket
// with t.CPUs cores of one thread, the hypervisor bit, and the same on the
// vendor-specific topology leaves. Every other leaf, the KVM leaves at
// 0x40000000 included, passes through untouched.
func (c CPUID) ForVCPU(t Topology) (CPUID, error) {
	if t.CPUs < 1 || t.CPUs > 255 {
		return nil, fmt.Errorf("patch CPUID: %d vCPUs, want 1-255", t.CPUs)
	}
	if t.APICID >= uint32(t.CPUs) {
		return nil, fmt.Errorf("patch CPUID: APIC id %d outside %d vCPUs", t.APICID, t.CPUs)
	}
	out := make(CPUID, 0, len(c)+2)
	for _, e := range c {
		// The topology leaves are rebuilt below from scratch.
		if e.Function == leafExtTopology || e.Function == leafExtTopologyV2 {
			continue
		}
		out = append(out, e)
	}
	n := uint32(t.CPUs)
	coreBits := uint32(bits.Len32(n - 1)) // APIC id bits that number the cores

	f := out.Find(leafFeatures, 0)
	if f == nil {
		return nil, fmt.Errorf("patch CPUID: leaf 1 missing from KVM's supported CPUID")
	}
	f.EBX = setField(f.EBX, 24, 8, t.APICID)
	f.EBX = setField(f.EBX, 16, 8, uint32(1)<<coreBits) // addressable logical CPU ids in the package
	f.EBX = setField(f.EBX, 8, 8, 8)                    // CLFLUSH line size in 8-byte units
	f.ECX |= cpuid1ECXHypervisor
	if t.TSCDeadline {
		f.ECX |= cpuid1ECXTSCDeadline
	}
	if n > 1 {
		f.EDX |= cpuid1EDXHTT
	} else {
		f.EDX &^= cpuid1EDXHTT
	}

	// x2APIC topology: level 0 = SMT (one thread per core), level 1 = core
	// (all vCPUs in one package), level 2 terminates the list. Leaf 0x1f is
	// kept only if the host offers it; it then says the same.
	topo := func(fn uint32) {
		out = append(out,
			uapi.KvmCpuidEntry2{Function: fn, Index: 0, Flags: uapi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
				EAX: 0, EBX: 1, ECX: topologyTypeSMT<<8 | 0, EDX: t.APICID},
			uapi.KvmCpuidEntry2{Function: fn, Index: 1, Flags: uapi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
				EAX: coreBits, EBX: n, ECX: topologyTypeCore<<8 | 1, EDX: t.APICID},
			uapi.KvmCpuidEntry2{Function: fn, Index: 2, Flags: uapi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
				EAX: 0, EBX: 0, ECX: 2, EDX: t.APICID})
	}
	if c.Find(leafExtTopology, 0) != nil || c.maxBasic() >= leafExtTopology {
		topo(leafExtTopology)
	}
	if c.Find(leafExtTopologyV2, 0) != nil {
		topo(leafExtTopologyV2)
	}

	switch out.Vendor() {
	case "GenuineIntel":
		// Deterministic cache parameters: cores per package and the
		// threads sharing each cache level.
		for i := range out {
			e := &out[i]
			if e.Function != leafCacheParams || e.EAX&0x1f == 0 {
				continue
			}
			e.EAX = setField(e.EAX, 26, 6, min(n-1, 63))
			if level := (e.EAX >> 5) & 7; level >= 3 {
				e.EAX = setField(e.EAX, 14, 12, n-1)
			} else {
				e.EAX = setField(e.EAX, 14, 12, 0)
			}
		}
	case "AuthenticAMD", "HygonGenuine":
		if e := out.Find(leafAMDSizes, 0); e != nil {
			e.ECX = setField(e.ECX, 0, 8, n-1)       // NC: cores in the package - 1
			e.ECX = setField(e.ECX, 12, 4, coreBits) // ApicIdCoreIdSize
		}
		for i := range out {
			e := &out[i]
			if e.Function != leafAMDCacheTopo || e.EAX&0x1f == 0 {
				continue
			}
			if level := (e.EAX >> 5) & 7; level >= 3 {
				e.EAX = setField(e.EAX, 14, 12, n-1)
			} else {
				e.EAX = setField(e.EAX, 14, 12, 0)
			}
		}
		if e := out.Find(leafAMDExtendedAPIC, 0); e != nil {
			e.EAX = t.APICID        // extended APIC id
			e.EBX = t.APICID & 0xff // compute unit id; threads per unit - 1 = 0
			e.ECX = 0               // node 0, one node per processor
			e.EDX = 0
		}
	}
	return out, nil
}

// maxBasic is the highest basic leaf (leaf 0 EAX).
func (c CPUID) maxBasic() uint32 {
	if e := c.Find(leafVendor, 0); e != nil {
		return e.EAX
	}
	return 0
}

// setField replaces the width-bit field of x at bit shift with v (truncated).
func setField(x uint32, shift, width uint, v uint32) uint32 {
	mask := uint32(1)<<width - 1
	return x&^(mask<<shift) | (v&mask)<<shift
}
