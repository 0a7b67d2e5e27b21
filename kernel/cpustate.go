package kernel

import "encoding/binary"

// Segment is a segment register as KVM's struct kvm_segment holds it: the
// hidden descriptor cache, with Limit in bytes (already scaled by G).
// Present == 0 makes the segment unusable.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8 // descriptor type field (bits 43:40)
	Present  uint8
	DPL      uint8
	DB       uint8 // default operation size: 1 = 32-bit
	S        uint8 // 1 = code/data, 0 = system
	L        uint8 // 1 = 64-bit code
	G        uint8 // 1 = limit in 4 KiB units
	AVL      uint8
}

// DescriptorTable is a GDTR or IDTR value.
type DescriptorTable struct {
	Base  uint64
	Limit uint16
}

// CPUState is the boot vCPU's register state at the kernel's entry point.
// General-purpose registers not named here must be zero.
type CPUState struct {
	RIP, RSP, RSI, RFLAGS  uint64
	CR0, CR3, CR4, EFER    uint64
	GDT, IDT               DescriptorTable
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	// LongMode reports a 64-bit entry (false: 32-bit protected mode, paging off).
	LongMode bool
}

// Control register and EFER bits.
const (
	CR0PE   = 1 << 0  // protection enable
	CR0ET   = 1 << 4  // extension type (always 1 on modern CPUs)
	CR0PG   = 1 << 31 // paging
	CR4PAE  = 1 << 5  // physical address extension
	EFERLME = 1 << 8  // long mode enable
	EFERLMA = 1 << 10 // long mode active
	// RFLAGSReserved is bit 1 of RFLAGS, which always reads as 1; IF stays clear.
	RFLAGSReserved = 1 << 1
)

// Descriptor types (S=1: code/data; S=0: system).
const (
	typeDataRWA = 0x3 // read/write, accessed
	typeCodeXRA = 0xb // execute/read, accessed
	typeLDT     = 0x2
	typeTSSBusy = 0xb // 32/64-bit TSS, busy
	tssLimit    = 0x67
	flatLimit   = 0xffffffff
	gdtEntries  = 6 // null, null, code, data, TSS (two slots in long mode)
)

// bootSegments returns the boot protocol's flat segments: code 0x10
// (64-bit if long, else 32-bit), data 0x18, and a TSS at 0x20 so TR is valid.
func bootSegments(long bool) (code, data, tss Segment) {
	code = Segment{Limit: flatLimit, Selector: selectorCode, Type: typeCodeXRA, Present: 1, S: 1, G: 1}
	if long {
		code.L = 1
	} else {
		code.DB = 1
	}
	data = Segment{Limit: flatLimit, Selector: selectorData, Type: typeDataRWA, Present: 1, DB: 1, S: 1, G: 1}
	tss = Segment{Limit: tssLimit, Selector: selectorTSS, Type: typeTSSBusy, Present: 1}
	return code, data, tss
}

// descriptor encodes a segment as an 8-byte GDT entry (the low half of a
// 16-byte system descriptor in long mode; base bits 63:32 are 0 here).
func descriptor(s Segment) uint64 {
	limit := uint64(s.Limit)
	if s.G == 1 {
		limit >>= 12
	}
	d := limit & 0xffff
	d |= (s.Base & 0xffffff) << 16
	d |= uint64(s.Type&0xf) << 40
	d |= uint64(s.S&1) << 44
	d |= uint64(s.DPL&3) << 45
	d |= uint64(s.Present&1) << 47
	d |= (limit >> 16 & 0xf) << 48
	d |= uint64(s.AVL&1) << 52
	d |= uint64(s.L&1) << 53
	d |= uint64(s.DB&1) << 54
	d |= uint64(s.G&1) << 55
	d |= (s.Base >> 24 & 0xff) << 56
	return d
}

// gdt returns the boot GDT's bytes.
func gdt(code, data, tss Segment) []byte {
	b := make([]byte, gdtEntries*8)
	le := binary.LittleEndian
	le.PutUint64(b[selectorCode:], descriptor(code))
	le.PutUint64(b[selectorData:], descriptor(data))
	le.PutUint64(b[selectorTSS:], descriptor(tss))
	return b
}

// entryState is the register state at the kernel's entry: the 64-bit entry
// (load address + 0x200, long mode, paging on through the identity map) or
// the 32-bit one (load address, protected mode, paging off).
func entryState(loadAddr uint64, long bool) *CPUState {
	code, data, tss := bootSegments(long)
	s := &CPUState{
		RSP:    bootStackTop,
		RSI:    zeroPageAddr,
		RFLAGS: RFLAGSReserved,
		CR0:    CR0PE | CR0ET,
		GDT:    DescriptorTable{Base: gdtAddr, Limit: gdtEntries*8 - 1},
		IDT:    DescriptorTable{Base: idtAddr, Limit: 7},
		CS:     code,
		DS:     data, ES: data, FS: data, GS: data, SS: data,
		TR:  tss,
		LDT: Segment{Type: typeLDT}, // not present: unusable
		RIP: loadAddr,
	}
	if long {
		s.LongMode = true
		s.RIP = loadAddr + 0x200
		s.CR0 |= CR0PG
		s.CR3 = pml4Addr
		s.CR4 = CR4PAE
		s.EFER = EFERLME | EFERLMA
	}
	return s
}
