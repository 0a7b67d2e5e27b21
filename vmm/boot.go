package vmm

import (
	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/kernel"
)

// bootRegs converts the loader's entry state into kvm_regs: RIP, RSP, RSI
// (the zero page) and RFLAGS; every other register zero.
func bootRegs(s *kernel.CPUState) uapi.KvmRegs {
	return uapi.KvmRegs{RIP: s.RIP, RSP: s.RSP, RSI: s.RSI, RFLAGS: s.RFLAGS}
}

// bootSregs applies the loader's entry state to the vCPU's current special
// registers (which keep KVM's APIC base and interrupt bitmap).
func bootSregs(cur uapi.KvmSregs, s *kernel.CPUState) uapi.KvmSregs {
	cur.CS, cur.DS, cur.ES = kvmSegment(s.CS), kvmSegment(s.DS), kvmSegment(s.ES)
	cur.FS, cur.GS, cur.SS = kvmSegment(s.FS), kvmSegment(s.GS), kvmSegment(s.SS)
	cur.TR, cur.LDT = kvmSegment(s.TR), kvmSegment(s.LDT)
	cur.GDT = uapi.KvmDtable{Base: s.GDT.Base, Limit: s.GDT.Limit}
	cur.IDT = uapi.KvmDtable{Base: s.IDT.Base, Limit: s.IDT.Limit}
	cur.CR0, cur.CR3, cur.CR4, cur.EFER = s.CR0, s.CR3, s.CR4, s.EFER
	cur.CR2, cur.CR8 = 0, 0
	return cur
}

// kvmSegment converts a segment; a non-present segment is marked unusable,
// as VMX requires for null selectors.
func kvmSegment(s kernel.Segment) uapi.KvmSegment {
	k := uapi.KvmSegment{
		Base: s.Base, Limit: s.Limit, Selector: s.Selector, Type: s.Type,
		Present: s.Present, DPL: s.DPL, DB: s.DB, S: s.S, L: s.L, G: s.G, AVL: s.AVL,
	}
	if s.Present == 0 {
		k.Unusable = 1
	}
	return k
}
