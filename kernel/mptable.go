package kernel

import (
	"encoding/binary"
	"fmt"
)

// Intel MultiProcessor Specification 1.4 structures, as Linux reads them
// (arch/x86/include/asm/mpspec_def.h). All little-endian and packed.
const (
	mpfSize       = 16 // struct mpf_intel, the floating pointer
	mpcHeaderSize = 44 // struct mpc_table, the configuration table header
	mpcCPUSize    = 20 // struct mpc_cpu
	mpcEntrySize  = 8  // struct mpc_bus, mpc_ioapic, mpc_intsrc, mpc_lintsrc

	// struct mpf_intel
	mpfSignature = 0  // "_MP_"
	mpfPhysPtr   = 4  // u32, address of the configuration table
	mpfLength    = 8  // u8, in 16-byte units: 1
	mpfSpec      = 9  // u8, 4 = version 1.4
	mpfChecksum  = 10 // u8, all 16 bytes sum to 0
	mpfFeature1  = 11 // u8, 0 = a configuration table is present

	// struct mpc_table
	mpcSignature = 0  // "PCMP"
	mpcLength    = 4  // u16, header and entries
	mpcSpec      = 6  // u8, 4
	mpcChecksum  = 7  // u8, Length bytes sum to 0
	mpcOEM       = 8  // char[8]
	mpcProductID = 16 // char[12]
	mpcOEMCount  = 34 // u16, number of entries
	mpcLAPIC     = 36 // u32, local APIC address

	// entry types
	mpProcessor = 0
	mpBus       = 1
	mpIOAPIC    = 2
	mpIntSrc    = 3
	mpLIntSrc   = 4

	// struct mpc_cpu
	cpuEnabled       = 1 << 0 // CPU_ENABLED
	cpuBootProcessor = 1 << 1 // CPU_BOOTPROCESSOR
	cpuSignature     = 0x600  // family 6; Linux takes the real one from CPUID
	cpuFeatureFPU    = 1 << 0
	cpuFeatureAPIC   = 1 << 9

	// interrupt types (enum mp_irq_source_types)
	mpINT    = 0
	mpNMI    = 1
	mpExtINT = 3

	mpIRQPolarityConforming = 0 // MP_IRQPOL_DEFAULT | MP_IRQTRIG_DEFAULT: as the bus says

	lapicVersion   = 0x14 // integrated APIC, what KVM's LAPIC reports
	ioapicVersion  = 0x11 // KVM's in-kernel IOAPIC (IOAPIC_VERSION_ID)
	mpcAPICUsable  = 1    // MPC_APIC_USABLE
	allLocalAPICs  = 0xff // destination "every local APIC"
	pciBusID       = 0
	isaBusID       = 1
	isaIRQs        = 16
	lapicBase      = 0xfee00000 // APIC_DEFAULT_PHYS_BASE
	IOAPICBase     = 0xfec00000 // IO_APIC_DEFAULT_PHYS_BASE, where the MP table says the IOAPIC is
	MaxCPUs        = 254        // xAPIC ids 0..253 for CPUs, the IOAPIC takes the next, 0xff is broadcast
	mpOEMID        = "HLSVMM  "
	mpProductID    = "MICROVM     "
	mpBusTypePCI   = "PCI   "
	mpBusTypeISA   = "ISA   "
	mpTableMaxSize = highMemory - mpTableAddr
)

// isaIRQPin is the IOAPIC pin an ISA IRQ arrives on. KVM's default GSI
// routing (kvm_setup_default_irq_routing) connects GSI n to IOAPIC pin n for
// n < 16, and vmm keeps those routes, so the in-kernel PIT's IRQ 0 arrives
// on pin 0, not on pin 2 as on a PC whose firmware reroutes it (QEMU installs
// its own GSI 0 -> pin 2 route together with an override). Change both
// together or the guest's timer check fails.
func isaIRQPin(irq int) uint8 { return uint8(irq) }

// mpTableSize is the size of the floating pointer plus the configuration
// table for cpus processors.
func mpTableSize(cpus int) int {
	return mpfSize + mpcHeaderSize + cpus*mpcCPUSize +
		mpcEntrySize*(2 /* buses */ +1 /* IOAPIC */ +isaIRQs+2 /* LINT0, LINT1 */)
}

// mpTable returns the MP floating pointer followed by the configuration
// table, to be placed at guest-physical address base: one processor entry
// per vCPU (APIC id = index, CPU 0 the boot processor), buses PCI 0 and
// ISA 1, one IOAPIC with id cpus at IOAPICBase, ISA IRQs 0-15 on IOAPIC
// pins (see isaIRQPin), ExtINT (the 8259) on the boot CPU's LINT0 and NMI
// on every CPU's LINT1.
func mpTable(base uint32, cpus int) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("%w: %d vCPUs, the MP table describes 1 to %d", ErrCPUCount, cpus, MaxCPUs)
	}
	b := make([]byte, mpTableSize(cpus))
	le := binary.LittleEndian

	mpf := b[:mpfSize]
	copy(mpf[mpfSignature:], "_MP_")
	le.PutUint32(mpf[mpfPhysPtr:], base+mpfSize)
	mpf[mpfLength] = 1
	mpf[mpfSpec] = 4
	mpf[mpfFeature1] = 0
	mpf[mpfChecksum] = -sum(mpf)

	mpc := b[mpfSize:]
	copy(mpc[mpcSignature:], "PCMP")
	le.PutUint16(mpc[mpcLength:], uint16(len(mpc)))
	mpc[mpcSpec] = 4
	copy(mpc[mpcOEM:], mpOEMID)
	copy(mpc[mpcProductID:], mpProductID)
	le.PutUint32(mpc[mpcLAPIC:], lapicBase)

	off, count := mpcHeaderSize, 0
	entry := func(size int) []byte {
		e := mpc[off : off+size]
		off += size
		count++
		return e
	}
	for i := range cpus {
		e := entry(mpcCPUSize)
		e[0] = mpProcessor
		e[1] = uint8(i) // APIC id
		e[2] = lapicVersion
		e[3] = cpuEnabled
		if i == 0 {
			e[3] |= cpuBootProcessor
		}
		le.PutUint32(e[4:], cpuSignature)
		le.PutUint32(e[8:], cpuFeatureFPU|cpuFeatureAPIC)
	}
	for _, bus := range []struct {
		id  uint8
		typ string
	}{{pciBusID, mpBusTypePCI}, {isaBusID, mpBusTypeISA}} {
		e := entry(mpcEntrySize)
		e[0] = mpBus
		e[1] = bus.id
		copy(e[2:], bus.typ)
	}
	ioapicID := uint8(cpus)
	e := entry(mpcEntrySize)
	e[0] = mpIOAPIC
	e[1] = ioapicID
	e[2] = ioapicVersion
	e[3] = mpcAPICUsable
	le.PutUint32(e[4:], IOAPICBase)
	for irq := range isaIRQs {
		e := entry(mpcEntrySize)
		e[0] = mpIntSrc
		e[1] = mpINT
		le.PutUint16(e[2:], mpIRQPolarityConforming)
		e[4] = isaBusID
		e[5] = uint8(irq)
		e[6] = ioapicID
		e[7] = isaIRQPin(irq)
	}
	for _, l := range []struct{ typ, dest, lint uint8 }{
		{mpExtINT, 0, 0},          // the 8259 behind the BSP's LINT0 (virtual wire mode)
		{mpNMI, allLocalAPICs, 1}, // NMI on every CPU's LINT1
	} {
		e := entry(mpcEntrySize)
		e[0] = mpLIntSrc
		e[1] = l.typ
		le.PutUint16(e[2:], mpIRQPolarityConforming)
		e[4] = isaBusID
		e[5] = 0
		e[6] = l.dest
		e[7] = l.lint
	}
	le.PutUint16(mpc[mpcOEMCount:], uint16(count))
	mpc[mpcChecksum] = -sum(mpc)
	return b, nil
}

func sum(b []byte) uint8 {
	var s uint8
	for _, c := range b {
		s += c
	}
	return s
}
