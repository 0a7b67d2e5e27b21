package vmm

import (
	"testing"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

const sig = uapi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX

// vendorEntry is leaf 0 for a 12-byte vendor string and a max basic leaf.
func vendorEntry(vendor string, max uint32) uapi.KvmCpuidEntry2 {
	w := func(s string) uint32 { return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24 }
	return uapi.KvmCpuidEntry2{Function: 0, EAX: max, EBX: w(vendor[0:4]), EDX: w(vendor[4:8]), ECX: w(vendor[8:12])}
}

// A trimmed KVM_GET_SUPPORTED_CPUID of an AMD host, as KVM reports it:
// leaf 0xb with sub-leaf 0 only, the KVM leaves, AMD topology leaves.
func amdSupported() CPUID {
	return CPUID{
		vendorEntry("AuthenticAMD", 0xd),
		{Function: 1, EAX: 0x800f12, EBX: 0x0b0e0800, ECX: 0x7ed8320b, EDX: 0x178bfbff},
		{Function: 0xb, Index: 0, Flags: sig, EAX: 1, EBX: 2, ECX: 0x100, EDX: 7},
		{Function: 0xd, Index: 0, Flags: sig, EAX: 7},
		{Function: 0xd, Index: 1, Flags: sig, EAX: 1},
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4b4d564b, ECX: 0x564b4d56, EDX: 0x4d},
		{Function: 0x40000001, EAX: 0x01007afb},
		{Function: 0x80000000, EAX: 0x8000001f},
		{Function: 0x80000008, EAX: 0x3030, ECX: 0x700f},
		{Function: 0x8000001d, Index: 0, Flags: sig, EAX: 0x121, EBX: 0x1c0003f},
		{Function: 0x8000001d, Index: 3, Flags: sig, EAX: 0x3c163, EBX: 0x3c0003f},
		{Function: 0x8000001e, EAX: 9, EBX: 0x105, ECX: 0x300},
	}
}

func intelSupported() CPUID {
	return CPUID{
		vendorEntry("GenuineIntel", 0x1f),
		{Function: 1, EAX: 0x906ea, EBX: 0x01100800, ECX: 0xfffa3223, EDX: 0x0f8bfbff},
		{Function: 4, Index: 0, Flags: sig, EAX: 0x1c004121},
		{Function: 4, Index: 3, Flags: sig, EAX: 0x1c03c163},
		{Function: 4, Index: 4, Flags: sig, EAX: 0},
		{Function: 0xb, Index: 0, Flags: sig, EAX: 1, EBX: 2, ECX: 0x100},
		{Function: 0x1f, Index: 0, Flags: sig, EAX: 1, EBX: 2, ECX: 0x100},
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4b4d564b, ECX: 0x564b4d56, EDX: 0x4d},
		{Function: 0x40000001, EAX: 0x01007afb},
	}
}

func mustFind(t *testing.T, c CPUID, fn, index uint32) uapi.KvmCpuidEntry2 {
	t.Helper()
	e := c.Find(fn, index)
	if e == nil {
		t.Fatalf("leaf %#x.%d missing", fn, index)
	}
	return *e
}

func TestCPUIDForVCPUCommon(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   CPUID
	}{{"amd", amdSupported()}, {"intel", intelSupported()}} {
		t.Run(tc.name, func(t *testing.T) {
			in := append(CPUID(nil), tc.in...)
			for id := uint32(0); id < 4; id++ {
				out, err := tc.in.ForVCPU(Topology{APICID: id, CPUs: 4, TSCDeadline: true})
				if err != nil {
					t.Fatal(err)
				}
				l1 := mustFind(t, out, 1, 0)
				if got := l1.EBX >> 24; got != id {
					t.Errorf("vCPU %d: leaf 1 EBX[31:24] = %d", id, got)
				}
				if got := l1.EBX >> 16 & 0xff; got != 4 {
					t.Errorf("leaf 1 EBX[23:16] = %d, want 4 addressable ids", got)
				}
				if got := l1.EBX >> 8 & 0xff; got != 8 {
					t.Errorf("leaf 1 CLFLUSH size = %d, want 8", got)
				}
				if l1.ECX&cpuid1ECXHypervisor == 0 || l1.ECX&cpuid1ECXTSCDeadline == 0 {
					t.Errorf("leaf 1 ECX %#x: hypervisor or TSC-deadline bit clear", l1.ECX)
				}
				if l1.EDX&cpuid1EDXHTT == 0 {
					t.Errorf("leaf 1 EDX %#x: HTT clear with 4 CPUs", l1.EDX)
				}
				smt, core, end := mustFind(t, out, 0xb, 0), mustFind(t, out, 0xb, 1), mustFind(t, out, 0xb, 2)
				if smt.EAX != 0 || smt.EBX != 1 || smt.ECX != 0x100 || smt.EDX != id {
					t.Errorf("leaf 0xb.0 = %+v", smt)
				}
				if core.EAX != 2 || core.EBX != 4 || core.ECX != 0x201 || core.EDX != id {
					t.Errorf("leaf 0xb.1 = %+v, want shift 2, 4 CPUs, core level", core)
				}
				if end.ECX>>8&0xff != 0 || end.EDX != id {
					t.Errorf("leaf 0xb.2 = %+v, want an invalid level", end)
				}
				if n := countLeaf(out, 0xb); n != 3 {
					t.Errorf("%d entries of leaf 0xb, want 3", n)
				}
				// The KVM leaves pass through untouched: they give the guest kvm-clock.
				if !out.HasKVMLeaves() || mustFind(t, out, 0x40000001, 0).EAX != 0x01007afb {
					t.Error("KVM leaves changed or lost")
				}
			}
			if len(in) != len(tc.in) || in[1] != tc.in[1] {
				t.Error("ForVCPU modified its receiver")
			}
		})
	}
}

func countLeaf(c CPUID, fn uint32) int {
	n := 0
	for _, e := range c {
		if e.Function == fn {
			n++
		}
	}
	return n
}

func TestCPUIDForVCPUAMD(t *testing.T) {
	out, err := amdSupported().ForVCPU(Topology{APICID: 5, CPUs: 6})
	if err != nil {
		t.Fatal(err)
	}
	if e := mustFind(t, out, 0x80000008, 0); e.ECX&0xff != 5 || e.ECX>>12&0xf != 3 {
		t.Errorf("0x80000008 ECX = %#x, want NC 5, ApicIdCoreIdSize 3", e.ECX)
	}
	if e := mustFind(t, out, 0x8000001e, 0); e.EAX != 5 || e.EBX != 5 || e.ECX != 0 {
		t.Errorf("0x8000001e = %+v, want APIC id 5, core 5, one thread, node 0", e)
	}
	if e := mustFind(t, out, 0x8000001d, 0); e.EAX>>14&0xfff != 0 {
		t.Errorf("L1 shared by %d+1 threads, want 1", e.EAX>>14&0xfff)
	}
	if e := mustFind(t, out, 0x8000001d, 3); e.EAX>>14&0xfff != 5 {
		t.Errorf("L3 shared by %d+1 threads, want 6", e.EAX>>14&0xfff)
	}
	if l1 := mustFind(t, out, 1, 0); l1.ECX&cpuid1ECXTSCDeadline != 0 || l1.EBX>>16&0xff != 8 {
		t.Errorf("leaf 1 = %+v: TSC deadline set without the capability, or ids not rounded up to 8", l1)
	}
	if out.Vendor() != "AuthenticAMD" {
		t.Errorf("vendor %q", out.Vendor())
	}
}

func TestCPUIDForVCPUIntel(t *testing.T) {
	out, err := intelSupported().ForVCPU(Topology{APICID: 0, CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if l1 := mustFind(t, out, 1, 0); l1.EDX&cpuid1EDXHTT != 0 || l1.EBX>>16&0xff != 1 {
		t.Errorf("one CPU: leaf 1 = %+v", l1)
	}
	if e := mustFind(t, out, 0x1f, 1); e.EAX != 0 || e.EBX != 1 {
		t.Errorf("leaf 0x1f.1 = %+v", e)
	}
	if e := mustFind(t, out, 4, 3); e.EAX>>26 != 0 || e.EAX>>14&0xfff != 0 {
		t.Errorf("leaf 4.3 = %#x: one core, one sharer expected", e.EAX)
	}
	out, err = intelSupported().ForVCPU(Topology{APICID: 2, CPUs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if e := mustFind(t, out, 4, 3); e.EAX>>26 != 2 || e.EAX>>14&0xfff != 2 {
		t.Errorf("leaf 4.3 = %#x: 3 cores sharing L3 expected", e.EAX)
	}
	if e := mustFind(t, out, 4, 0); e.EAX>>14&0xfff != 0 {
		t.Errorf("leaf 4.0 = %#x: L1 not private", e.EAX)
	}
	if e := mustFind(t, out, 4, 4); e.EAX != 0 {
		t.Errorf("the terminating leaf 4.4 changed: %#x", e.EAX)
	}
}

func TestCPUIDForVCPUErrors(t *testing.T) {
	for _, tp := range []Topology{{APICID: 0, CPUs: 0}, {APICID: 4, CPUs: 4}, {APICID: 0, CPUs: 256}} {
		if _, err := amdSupported().ForVCPU(tp); err == nil {
			t.Errorf("%+v: no error", tp)
		}
	}
	if _, err := (CPUID{vendorEntry("AuthenticAMD", 1)}).ForVCPU(Topology{CPUs: 1}); err == nil {
		t.Error("no leaf 1: no error")
	}
}

func TestHasKVMLeaves(t *testing.T) {
	c := amdSupported()
	if !c.HasKVMLeaves() {
		t.Fatal("KVM signature not recognised")
	}
	c.Find(0x40000000, 0).EBX = 0
	if c.HasKVMLeaves() {
		t.Fatal("broken signature accepted")
	}
}

func TestFlexBufferLayout(t *testing.T) {
	b := cpuidBufferFrom(amdSupported())
	if b.header().Nent != uint32(len(amdSupported())) {
		t.Fatalf("nent %d", b.header().Nent)
	}
	// Entry 0 starts 8 bytes in, as in struct kvm_cpuid2.
	if got := b.words[1]; got != uint64(0) /* function 0, index 0 */ {
		t.Fatalf("word 1 = %#x", got)
	}
	if got := uint32(b.words[2] >> 32); got != 0xd /* eax of leaf 0 */ {
		t.Fatalf("leaf 0 eax at byte 20 = %#x", got)
	}
	if got := b.entries(); len(got) != len(amdSupported()) || got[1] != amdSupported()[1] {
		t.Fatal("entries do not round-trip")
	}
	m := msrsBufferFrom(bootMSRs())
	if m.header().Nmsrs != uint32(len(bootMSRs())) || m.slots()[9].Index != msrIA32MiscEnable {
		t.Fatal("msr buffer layout")
	}
}
