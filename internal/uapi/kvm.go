package uapi

import "unsafe"

// This file mirrors include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h
// (x86-64 only). Struct layouts match the kernel's byte for byte; kvm_test.go
// checks sizes, offsets and ioctl numbers against values printed by a C
// program that includes the real headers. Flexible array members are left
// out of the header structs: callers lay out header + entries in one buffer.

// KVMIO is the ioctl type of every KVM request.
const KVMIO = 0xAE

// KVM_API_VERSION is the only API version there has ever been (since 2.6.22).
const KVM_API_VERSION = 12

// Capabilities for KVM_CHECK_EXTENSION.
const (
	KVM_CAP_IRQCHIP               = 0
	KVM_CAP_HLT                   = 1
	KVM_CAP_USER_MEMORY           = 3
	KVM_CAP_SET_TSS_ADDR          = 4
	KVM_CAP_EXT_CPUID             = 7
	KVM_CAP_NR_VCPUS              = 9
	KVM_CAP_NR_MEMSLOTS           = 10
	KVM_CAP_MP_STATE              = 14
	KVM_CAP_SYNC_MMU              = 16
	KVM_CAP_IRQ_ROUTING           = 25
	KVM_CAP_IRQ_INJECT_STATUS     = 26
	KVM_CAP_IRQFD                 = 32
	KVM_CAP_PIT2                  = 33
	KVM_CAP_PIT_STATE2            = 35
	KVM_CAP_IOEVENTFD             = 36
	KVM_CAP_SET_IDENTITY_MAP_ADDR = 37
	KVM_CAP_ADJUST_CLOCK          = 39
	KVM_CAP_INTERNAL_ERROR_DATA   = 40
	KVM_CAP_VCPU_EVENTS           = 41
	KVM_CAP_XSAVE                 = 55
	KVM_CAP_TSC_CONTROL           = 60
	KVM_CAP_GET_TSC_KHZ           = 61
	KVM_CAP_MAX_VCPUS             = 66
	KVM_CAP_TSC_DEADLINE_TIMER    = 72
	KVM_CAP_SIGNAL_MSI            = 77
	KVM_CAP_IRQFD_RESAMPLE        = 82
	KVM_CAP_IOEVENTFD_ANY_LENGTH  = 122
	KVM_CAP_MAX_VCPU_ID           = 128
	KVM_CAP_IMMEDIATE_EXIT        = 136
)

// Exit reasons in kvm_run.exit_reason.
const (
	KVM_EXIT_UNKNOWN         = 0
	KVM_EXIT_EXCEPTION       = 1
	KVM_EXIT_IO              = 2
	KVM_EXIT_HYPERCALL       = 3
	KVM_EXIT_DEBUG           = 4
	KVM_EXIT_HLT             = 5
	KVM_EXIT_MMIO            = 6
	KVM_EXIT_IRQ_WINDOW_OPEN = 7
	KVM_EXIT_SHUTDOWN        = 8
	KVM_EXIT_FAIL_ENTRY      = 9
	KVM_EXIT_INTR            = 10
	KVM_EXIT_SET_TPR         = 11
	KVM_EXIT_TPR_ACCESS      = 12
	KVM_EXIT_NMI             = 16
	KVM_EXIT_INTERNAL_ERROR  = 17
	KVM_EXIT_SYSTEM_EVENT    = 24
	KVM_EXIT_IOAPIC_EOI      = 26
	KVM_EXIT_HYPERV          = 27
	KVM_EXIT_X86_RDMSR       = 29
	KVM_EXIT_X86_WRMSR       = 30
	KVM_EXIT_X86_BUS_LOCK    = 33
	KVM_EXIT_NOTIFY          = 37
)

// kvm_run.io.direction.
const (
	KVM_EXIT_IO_IN  = 0
	KVM_EXIT_IO_OUT = 1
)

// kvm_run.internal.suberror.
const (
	KVM_INTERNAL_ERROR_EMULATION              = 1
	KVM_INTERNAL_ERROR_SIMUL_EX               = 2
	KVM_INTERNAL_ERROR_DELIVERY_EV            = 3
	KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4
)

// kvm_run.system_event.type.
const (
	KVM_SYSTEM_EVENT_SHUTDOWN = 1
	KVM_SYSTEM_EVENT_RESET    = 2
	KVM_SYSTEM_EVENT_CRASH    = 3
	KVM_SYSTEM_EVENT_WAKEUP   = 4
	KVM_SYSTEM_EVENT_SUSPEND  = 5
	KVM_SYSTEM_EVENT_SEV_TERM = 6
)

// kvm_mp_state.mp_state.
const (
	KVM_MP_STATE_RUNNABLE      = 0
	KVM_MP_STATE_UNINITIALIZED = 1
	KVM_MP_STATE_INIT_RECEIVED = 2
	KVM_MP_STATE_HALTED        = 3
	KVM_MP_STATE_SIPI_RECEIVED = 4
	KVM_MP_STATE_STOPPED       = 5
	KVM_MP_STATE_CHECK_STOP    = 6
	KVM_MP_STATE_OPERATING     = 7
	KVM_MP_STATE_LOAD          = 8
	KVM_MP_STATE_AP_RESET_HOLD = 9
	KVM_MP_STATE_SUSPENDED     = 10
)

// Interrupt routing (kvm_irq_routing_entry.type) and irqchip ids.
const (
	KVM_IRQ_ROUTING_IRQCHIP = 1
	KVM_IRQ_ROUTING_MSI     = 2

	KVM_IRQCHIP_PIC_MASTER = 0
	KVM_IRQCHIP_PIC_SLAVE  = 1
	KVM_IRQCHIP_IOAPIC     = 2
	KVM_IOAPIC_NUM_PINS    = 24
)

// Flags.
const (
	KVM_IRQFD_FLAG_DEASSIGN         = 1 << 0
	KVM_IRQFD_FLAG_RESAMPLE         = 1 << 1
	KVM_IOEVENTFD_FLAG_DATAMATCH    = 1 << 0
	KVM_IOEVENTFD_FLAG_PIO          = 1 << 1
	KVM_IOEVENTFD_FLAG_DEASSIGN     = 1 << 2
	KVM_PIT_SPEAKER_DUMMY           = 1
	KVM_MEM_LOG_DIRTY_PAGES         = 1 << 0
	KVM_MEM_READONLY                = 1 << 1
	KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 << 0 // sic: the kernel's spelling
	KVM_APIC_REG_SIZE               = 0x400
	KVM_NR_INTERRUPTS               = 256
)

// KvmUserspaceMemoryRegion is struct kvm_userspace_memory_region.
type KvmUserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// KvmRegs is struct kvm_regs.
type KvmRegs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// KvmSegment is struct kvm_segment.
type KvmSegment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
	Unusable uint8
	Padding  uint8
}

// KvmDtable is struct kvm_dtable.
type KvmDtable struct {
	Base    uint64
	Limit   uint16
	Padding [3]uint16
}

// KvmSregs is struct kvm_sregs.
type KvmSregs struct {
	CS, DS, ES, FS, GS, SS KvmSegment
	TR, LDT                KvmSegment
	GDT, IDT               KvmDtable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	ApicBase               uint64
	InterruptBitmap        [(KVM_NR_INTERRUPTS + 63) / 64]uint64
}

// KvmFpu is struct kvm_fpu.
type KvmFpu struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	Pad1       uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	Pad2       uint32
}

// KvmMsrEntry is struct kvm_msr_entry.
type KvmMsrEntry struct {
	Index    uint32
	Reserved uint32
	Data     uint64
}

// KvmMsrs is the header of struct kvm_msrs; Nmsrs entries follow it.
type KvmMsrs struct {
	Nmsrs uint32
	Pad   uint32
}

// KvmMsrList is the header of struct kvm_msr_list; Nmsrs uint32 indices follow.
type KvmMsrList struct {
	Nmsrs uint32
}

// KvmCpuidEntry2 is struct kvm_cpuid_entry2.
type KvmCpuidEntry2 struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	Padding  [3]uint32
}

// KvmCpuid2 is the header of struct kvm_cpuid2; Nent entries follow it.
type KvmCpuid2 struct {
	Nent    uint32
	Padding uint32
}

// KvmPitConfig is struct kvm_pit_config.
type KvmPitConfig struct {
	Flags uint32
	Pad   [15]uint32
}

// KvmIrqfd is struct kvm_irqfd.
type KvmIrqfd struct {
	Fd         uint32
	GSI        uint32
	Flags      uint32
	Resamplefd uint32
	Pad        [16]uint8
}

// KvmIoeventfd is struct kvm_ioeventfd.
type KvmIoeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	Fd        int32
	Flags     uint32
	Pad       [36]uint8
}

// KvmIrqRoutingIrqchip is struct kvm_irq_routing_irqchip.
type KvmIrqRoutingIrqchip struct {
	Irqchip uint32
	Pin     uint32
}

// KvmIrqRoutingMsi is struct kvm_irq_routing_msi (the pad/devid union as Devid).
type KvmIrqRoutingMsi struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Devid     uint32
}

// KvmIrqRoutingEntry is struct kvm_irq_routing_entry. U is the union of the
// per-type payloads; use Irqchip/Msi (or SetIrqchip/SetMsi) to view it.
type KvmIrqRoutingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	Pad   uint32
	U     [8]uint32
}

// Irqchip views the union as kvm_irq_routing_irqchip.
func (e *KvmIrqRoutingEntry) Irqchip() *KvmIrqRoutingIrqchip {
	return (*KvmIrqRoutingIrqchip)(unsafe.Pointer(&e.U[0]))
}

// Msi views the union as kvm_irq_routing_msi.
func (e *KvmIrqRoutingEntry) Msi() *KvmIrqRoutingMsi {
	return (*KvmIrqRoutingMsi)(unsafe.Pointer(&e.U[0]))
}

// KvmIrqRouting is the header of struct kvm_irq_routing; Nr entries follow.
type KvmIrqRouting struct {
	Nr    uint32
	Flags uint32
}

// KvmMsi is struct kvm_msi.
type KvmMsi struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	Devid     uint32
	Pad       [12]uint8
}

// KvmIrqLevel is struct kvm_irq_level (the irq/status union as Irq).
type KvmIrqLevel struct {
	Irq   uint32
	Level uint32
}

// KvmLapicState is struct kvm_lapic_state.
type KvmLapicState struct {
	Regs [KVM_APIC_REG_SIZE]byte
}

// KvmMpState is struct kvm_mp_state.
type KvmMpState struct {
	MpState uint32
}

// KvmRun is struct kvm_run on x86 (the mmap'd area of a vCPU fd starts with
// it). Exit is the exit-information union; view it with IO, MMIO, FailEntry,
// Internal, SystemEvent, Hw and Ex.
type KvmRun struct {
	RequestInterruptWindow     uint8
	ImmediateExit              uint8
	Padding1                   [6]uint8
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IfFlag                     uint8
	Flags                      uint16
	CR8                        uint64
	ApicBase                   uint64
	Exit                       [256]byte
	KvmValidRegs               uint64
	KvmDirtyRegs               uint64
	S                          [2048]byte
}

// KvmRunIO is kvm_run.io. The data of an access lives in the run area at
// DataOffset (relative to the start of kvm_run): Count items of Size bytes.
type KvmRunIO struct {
	Direction  uint8
	Size       uint8
	Port       uint16
	Count      uint32
	DataOffset uint64
}

// KvmRunMMIO is kvm_run.mmio.
type KvmRunMMIO struct {
	PhysAddr uint64
	Data     [8]byte
	Len      uint32
	IsWrite  uint8
	_        [3]uint8
}

// KvmRunFailEntry is kvm_run.fail_entry.
type KvmRunFailEntry struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
	_                          uint32
}

// KvmRunInternal is kvm_run.internal.
type KvmRunInternal struct {
	Suberror uint32
	Ndata    uint32
	Data     [16]uint64
}

// KvmRunSystemEvent is kvm_run.system_event.
type KvmRunSystemEvent struct {
	Type  uint32
	Ndata uint32
	Data  [16]uint64
}

// KvmRunHw is kvm_run.hw.
type KvmRunHw struct {
	HardwareExitReason uint64
}

// KvmRunEx is kvm_run.ex.
type KvmRunEx struct {
	Exception uint32
	ErrorCode uint32
}

// Offset of the exit union in kvm_run; the views below start there.
const KvmRunExitOffset = unsafe.Offsetof(KvmRun{}.Exit)

// IO views the exit union as kvm_run.io.
func (r *KvmRun) IO() *KvmRunIO { return (*KvmRunIO)(unsafe.Pointer(&r.Exit[0])) }

// MMIO views the exit union as kvm_run.mmio.
func (r *KvmRun) MMIO() *KvmRunMMIO { return (*KvmRunMMIO)(unsafe.Pointer(&r.Exit[0])) }

// FailEntry views the exit union as kvm_run.fail_entry.
func (r *KvmRun) FailEntry() *KvmRunFailEntry {
	return (*KvmRunFailEntry)(unsafe.Pointer(&r.Exit[0]))
}

// Internal views the exit union as kvm_run.internal.
func (r *KvmRun) Internal() *KvmRunInternal { return (*KvmRunInternal)(unsafe.Pointer(&r.Exit[0])) }

// SystemEvent views the exit union as kvm_run.system_event.
func (r *KvmRun) SystemEvent() *KvmRunSystemEvent {
	return (*KvmRunSystemEvent)(unsafe.Pointer(&r.Exit[0]))
}

// Hw views the exit union as kvm_run.hw.
func (r *KvmRun) Hw() *KvmRunHw { return (*KvmRunHw)(unsafe.Pointer(&r.Exit[0])) }

// Ex views the exit union as kvm_run.ex.
func (r *KvmRun) Ex() *KvmRunEx { return (*KvmRunEx)(unsafe.Pointer(&r.Exit[0])) }

// ioctls on the /dev/kvm fd.
var (
	KVM_GET_API_VERSION     = IO(KVMIO, 0x00)
	KVM_CREATE_VM           = IO(KVMIO, 0x01)
	KVM_GET_MSR_INDEX_LIST  = IOWR(KVMIO, 0x02, unsafe.Sizeof(KvmMsrList{}))
	KVM_CHECK_EXTENSION     = IO(KVMIO, 0x03)
	KVM_GET_VCPU_MMAP_SIZE  = IO(KVMIO, 0x04)
	KVM_GET_SUPPORTED_CPUID = IOWR(KVMIO, 0x05, unsafe.Sizeof(KvmCpuid2{}))
)

// ioctls on a VM fd.
var (
	KVM_CREATE_VCPU            = IO(KVMIO, 0x41)
	KVM_SET_USER_MEMORY_REGION = IOW(KVMIO, 0x46, unsafe.Sizeof(KvmUserspaceMemoryRegion{}))
	KVM_SET_TSS_ADDR           = IO(KVMIO, 0x47)
	KVM_SET_IDENTITY_MAP_ADDR  = IOW(KVMIO, 0x48, unsafe.Sizeof(uint64(0)))
	KVM_CREATE_IRQCHIP         = IO(KVMIO, 0x60)
	KVM_IRQ_LINE               = IOW(KVMIO, 0x61, unsafe.Sizeof(KvmIrqLevel{}))
	KVM_SET_GSI_ROUTING        = IOW(KVMIO, 0x6a, unsafe.Sizeof(KvmIrqRouting{}))
	KVM_IRQFD                  = IOW(KVMIO, 0x76, unsafe.Sizeof(KvmIrqfd{}))
	KVM_CREATE_PIT2            = IOW(KVMIO, 0x77, unsafe.Sizeof(KvmPitConfig{}))
	KVM_IOEVENTFD              = IOW(KVMIO, 0x79, unsafe.Sizeof(KvmIoeventfd{}))
	KVM_SIGNAL_MSI             = IOW(KVMIO, 0xa5, unsafe.Sizeof(KvmMsi{}))
)

// ioctls on a vCPU fd.
var (
	KVM_RUN          = IO(KVMIO, 0x80)
	KVM_GET_REGS     = IOR(KVMIO, 0x81, unsafe.Sizeof(KvmRegs{}))
	KVM_SET_REGS     = IOW(KVMIO, 0x82, unsafe.Sizeof(KvmRegs{}))
	KVM_GET_SREGS    = IOR(KVMIO, 0x83, unsafe.Sizeof(KvmSregs{}))
	KVM_SET_SREGS    = IOW(KVMIO, 0x84, unsafe.Sizeof(KvmSregs{}))
	KVM_GET_MSRS     = IOWR(KVMIO, 0x88, unsafe.Sizeof(KvmMsrs{}))
	KVM_SET_MSRS     = IOW(KVMIO, 0x89, unsafe.Sizeof(KvmMsrs{}))
	KVM_GET_FPU      = IOR(KVMIO, 0x8c, unsafe.Sizeof(KvmFpu{}))
	KVM_SET_FPU      = IOW(KVMIO, 0x8d, unsafe.Sizeof(KvmFpu{}))
	KVM_GET_LAPIC    = IOR(KVMIO, 0x8e, unsafe.Sizeof(KvmLapicState{}))
	KVM_SET_LAPIC    = IOW(KVMIO, 0x8f, unsafe.Sizeof(KvmLapicState{}))
	KVM_SET_CPUID2   = IOW(KVMIO, 0x90, unsafe.Sizeof(KvmCpuid2{}))
	KVM_GET_CPUID2   = IOWR(KVMIO, 0x91, unsafe.Sizeof(KvmCpuid2{}))
	KVM_GET_MP_STATE = IOR(KVMIO, 0x98, unsafe.Sizeof(KvmMpState{}))
	KVM_SET_MP_STATE = IOW(KVMIO, 0x99, unsafe.Sizeof(KvmMpState{}))
	KVM_GET_TSC_KHZ  = IO(KVMIO, 0xa3)
)
