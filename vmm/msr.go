package vmm

import (
	"encoding/binary"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

// MSR indices (arch/x86/include/asm/msr-index.h).
const (
	msrIA32TSC         = 0x00000010
	msrIA32SysenterCS  = 0x00000174
	msrIA32SysenterESP = 0x00000175
	msrIA32SysenterEIP = 0x00000176
	msrIA32MiscEnable  = 0x000001a0
	msrMTRRdefType     = 0x000002ff
	msrSTAR            = 0xc0000081
	msrLSTAR           = 0xc0000082
	msrCSTAR           = 0xc0000083
	msrSyscallMask     = 0xc0000084
	msrKernelGSBase    = 0xc0000102
	miscEnableFastStr  = 1 << 0
	mtrrEnable         = 1 << 11
	mtrrMemTypeWB      = 6
)

// bootMSRs is the MSR state every vCPU starts with (Firecracker's
// create_boot_msr_entries): the syscall MSRs cleared, the TSC at 0 (KVM
// then keeps the vCPUs' TSCs in sync), fast strings on, and the MTRRs
// enabled with write-back as the default type so the guest maps RAM cached.
func bootMSRs() []uapi.KvmMsrEntry {
	return []uapi.KvmMsrEntry{
		{Index: msrIA32SysenterCS},
		{Index: msrIA32SysenterESP},
		{Index: msrIA32SysenterEIP},
		{Index: msrSTAR},
		{Index: msrCSTAR},
		{Index: msrKernelGSBase},
		{Index: msrSyscallMask},
		{Index: msrLSTAR},
		{Index: msrIA32TSC},
		{Index: msrIA32MiscEnable, Data: miscEnableFastStr},
		{Index: msrMTRRdefType, Data: mtrrEnable | mtrrMemTypeWB},
	}
}

// Local APIC registers and LVT delivery modes (arch/x86/include/asm/apicdef.h).
const (
	apicLVT0       = 0x350
	apicLVT1       = 0x360
	apicModeMask   = 0x700
	apicModeNMI    = 0x4
	apicModeExtINT = 0x7
	apicModeShift  = 8
)

// setLINT makes LINT0 deliver ExtINT (the 8259 PIC's output, as on a PC
// where the BIOS wired it so) and LINT1 deliver NMI, in a copy of the
// local APIC register page.
func setLINT(lapic *uapi.KvmLapicState) {
	set := func(reg int, mode uint32) {
		v := binary.LittleEndian.Uint32(lapic.Regs[reg:])
		v = v&^apicModeMask | mode<<apicModeShift
		binary.LittleEndian.PutUint32(lapic.Regs[reg:], v)
	}
	set(apicLVT0, apicModeExtINT)
	set(apicLVT1, apicModeNMI)
}

// FPU state at reset: x87 control word with all exceptions masked, SSE
// MXCSR with all exceptions masked (Intel SDM vol. 1 8.1.5, 10.2.3.1).
const (
	fpuControlWord = 0x37f
	mxcsrDefault   = 0x1f80
)
