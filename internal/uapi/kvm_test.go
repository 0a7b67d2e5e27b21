package uapi

import (
	"testing"
	"unsafe"
)

// Expected values are the kernel's, printed on x86-64 by a C program that
// includes <linux/kvm.h> (linux-libc-dev 6.1): sizeof, offsetof and the
// _IO/_IOR/_IOW/_IOWR macros themselves.

func TestKVMStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_userspace_memory_region", unsafe.Sizeof(KvmUserspaceMemoryRegion{}), 32},
		{"kvm_regs", unsafe.Sizeof(KvmRegs{}), 144},
		{"kvm_sregs", unsafe.Sizeof(KvmSregs{}), 312},
		{"kvm_segment", unsafe.Sizeof(KvmSegment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(KvmDtable{}), 16},
		{"kvm_fpu", unsafe.Sizeof(KvmFpu{}), 416},
		{"kvm_msrs", unsafe.Sizeof(KvmMsrs{}), 8},
		{"kvm_msr_entry", unsafe.Sizeof(KvmMsrEntry{}), 16},
		{"kvm_cpuid2", unsafe.Sizeof(KvmCpuid2{}), 8},
		{"kvm_cpuid_entry2", unsafe.Sizeof(KvmCpuidEntry2{}), 40},
		{"kvm_pit_config", unsafe.Sizeof(KvmPitConfig{}), 64},
		{"kvm_irqfd", unsafe.Sizeof(KvmIrqfd{}), 32},
		{"kvm_ioeventfd", unsafe.Sizeof(KvmIoeventfd{}), 64},
		{"kvm_irq_routing", unsafe.Sizeof(KvmIrqRouting{}), 8},
		{"kvm_irq_routing_entry", unsafe.Sizeof(KvmIrqRoutingEntry{}), 48},
		{"kvm_irq_routing_irqchip", unsafe.Sizeof(KvmIrqRoutingIrqchip{}), 8},
		{"kvm_irq_routing_msi", unsafe.Sizeof(KvmIrqRoutingMsi{}), 16},
		{"kvm_msi", unsafe.Sizeof(KvmMsi{}), 32},
		{"kvm_irq_level", unsafe.Sizeof(KvmIrqLevel{}), 8},
		{"kvm_lapic_state", unsafe.Sizeof(KvmLapicState{}), 1024},
		{"kvm_mp_state", unsafe.Sizeof(KvmMpState{}), 4},
		{"kvm_run", unsafe.Sizeof(KvmRun{}), 2352},
	} {
		if tc.got != tc.want {
			t.Errorf("sizeof(struct %s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestKVMOffsets(t *testing.T) {
	var run KvmRun
	base := uintptr(unsafe.Pointer(&run))
	off := func(p unsafe.Pointer) uintptr { return uintptr(p) - base }
	io, mmio := run.IO(), run.MMIO()
	var sregs KvmSregs
	sbase := uintptr(unsafe.Pointer(&sregs))
	var fpu KvmFpu
	var rt KvmIrqRoutingEntry
	var ioev KvmIoeventfd
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_run.immediate_exit", unsafe.Offsetof(run.ImmediateExit), 1},
		{"kvm_run.exit_reason", unsafe.Offsetof(run.ExitReason), 8},
		{"kvm_run.io.direction", off(unsafe.Pointer(&io.Direction)), 32},
		{"kvm_run.io.size", off(unsafe.Pointer(&io.Size)), 33},
		{"kvm_run.io.port", off(unsafe.Pointer(&io.Port)), 34},
		{"kvm_run.io.count", off(unsafe.Pointer(&io.Count)), 36},
		{"kvm_run.io.data_offset", off(unsafe.Pointer(&io.DataOffset)), 40},
		{"kvm_run.mmio.phys_addr", off(unsafe.Pointer(&mmio.PhysAddr)), 32},
		{"kvm_run.mmio.data", off(unsafe.Pointer(&mmio.Data)), 40},
		{"kvm_run.mmio.len", off(unsafe.Pointer(&mmio.Len)), 48},
		{"kvm_run.mmio.is_write", off(unsafe.Pointer(&mmio.IsWrite)), 52},
		{"kvm_run.fail_entry.cpu", off(unsafe.Pointer(&run.FailEntry().CPU)), 40},
		{"kvm_run.internal.ndata", off(unsafe.Pointer(&run.Internal().Ndata)), 36},
		{"kvm_run.internal.data", off(unsafe.Pointer(&run.Internal().Data)), 40},
		{"kvm_run.system_event.type", off(unsafe.Pointer(&run.SystemEvent().Type)), 32},
		{"kvm_run.system_event.data", off(unsafe.Pointer(&run.SystemEvent().Data)), 40},
		{"kvm_run.ex.exception", off(unsafe.Pointer(&run.Ex().Exception)), 32},
		{"kvm_run.kvm_valid_regs", unsafe.Offsetof(run.KvmValidRegs), 288},
		{"kvm_run.s", unsafe.Offsetof(run.S), 304},
		{"kvm_sregs.tr", uintptr(unsafe.Pointer(&sregs.TR)) - sbase, 144},
		{"kvm_sregs.gdt", uintptr(unsafe.Pointer(&sregs.GDT)) - sbase, 192},
		{"kvm_sregs.cr0", uintptr(unsafe.Pointer(&sregs.CR0)) - sbase, 224},
		{"kvm_sregs.efer", uintptr(unsafe.Pointer(&sregs.EFER)) - sbase, 264},
		{"kvm_sregs.apic_base", uintptr(unsafe.Pointer(&sregs.ApicBase)) - sbase, 272},
		{"kvm_sregs.interrupt_bitmap", uintptr(unsafe.Pointer(&sregs.InterruptBitmap)) - sbase, 280},
		{"kvm_fpu.fcw", unsafe.Offsetof(fpu.FCW), 128},
		{"kvm_fpu.xmm", unsafe.Offsetof(fpu.XMM), 152},
		{"kvm_fpu.mxcsr", unsafe.Offsetof(fpu.MXCSR), 408},
		{"kvm_irq_routing_entry.u", unsafe.Offsetof(rt.U), 16},
		{"kvm_ioeventfd.fd", unsafe.Offsetof(ioev.Fd), 20},
		{"kvm_ioeventfd.flags", unsafe.Offsetof(ioev.Flags), 24},
	} {
		if tc.got != tc.want {
			t.Errorf("offsetof(%s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestKVMIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_GET_API_VERSION", KVM_GET_API_VERSION, 0xae00},
		{"KVM_CREATE_VM", KVM_CREATE_VM, 0xae01},
		{"KVM_GET_MSR_INDEX_LIST", KVM_GET_MSR_INDEX_LIST, 0xc004ae02},
		{"KVM_CHECK_EXTENSION", KVM_CHECK_EXTENSION, 0xae03},
		{"KVM_GET_VCPU_MMAP_SIZE", KVM_GET_VCPU_MMAP_SIZE, 0xae04},
		{"KVM_GET_SUPPORTED_CPUID", KVM_GET_SUPPORTED_CPUID, 0xc008ae05},
		{"KVM_CREATE_VCPU", KVM_CREATE_VCPU, 0xae41},
		{"KVM_SET_USER_MEMORY_REGION", KVM_SET_USER_MEMORY_REGION, 0x4020ae46},
		{"KVM_SET_TSS_ADDR", KVM_SET_TSS_ADDR, 0xae47},
		{"KVM_SET_IDENTITY_MAP_ADDR", KVM_SET_IDENTITY_MAP_ADDR, 0x4008ae48},
		{"KVM_CREATE_IRQCHIP", KVM_CREATE_IRQCHIP, 0xae60},
		{"KVM_IRQ_LINE", KVM_IRQ_LINE, 0x4008ae61},
		{"KVM_SET_GSI_ROUTING", KVM_SET_GSI_ROUTING, 0x4008ae6a},
		{"KVM_IRQFD", KVM_IRQFD, 0x4020ae76},
		{"KVM_CREATE_PIT2", KVM_CREATE_PIT2, 0x4040ae77},
		{"KVM_IOEVENTFD", KVM_IOEVENTFD, 0x4040ae79},
		{"KVM_SIGNAL_MSI", KVM_SIGNAL_MSI, 0x4020aea5},
		{"KVM_RUN", KVM_RUN, 0xae80},
		{"KVM_GET_REGS", KVM_GET_REGS, 0x8090ae81},
		{"KVM_SET_REGS", KVM_SET_REGS, 0x4090ae82},
		{"KVM_GET_SREGS", KVM_GET_SREGS, 0x8138ae83},
		{"KVM_SET_SREGS", KVM_SET_SREGS, 0x4138ae84},
		{"KVM_GET_MSRS", KVM_GET_MSRS, 0xc008ae88},
		{"KVM_SET_MSRS", KVM_SET_MSRS, 0x4008ae89},
		{"KVM_GET_FPU", KVM_GET_FPU, 0x81a0ae8c},
		{"KVM_SET_FPU", KVM_SET_FPU, 0x41a0ae8d},
		{"KVM_GET_LAPIC", KVM_GET_LAPIC, 0x8400ae8e},
		{"KVM_SET_LAPIC", KVM_SET_LAPIC, 0x4400ae8f},
		{"KVM_SET_CPUID2", KVM_SET_CPUID2, 0x4008ae90},
		{"KVM_GET_CPUID2", KVM_GET_CPUID2, 0xc008ae91},
		{"KVM_GET_MP_STATE", KVM_GET_MP_STATE, 0x8004ae98},
		{"KVM_SET_MP_STATE", KVM_SET_MP_STATE, 0x4004ae99},
		{"KVM_GET_TSC_KHZ", KVM_GET_TSC_KHZ, 0xaea3},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func TestRoutingUnionViews(t *testing.T) {
	var e KvmIrqRoutingEntry
	e.Msi().AddressLo, e.Msi().AddressHi, e.Msi().Data = 0xfee00000, 1, 0x4041
	if e.U[0] != 0xfee00000 || e.U[1] != 1 || e.U[2] != 0x4041 {
		t.Errorf("msi view wrote %#x", e.U[:3])
	}
	e.Irqchip().Irqchip, e.Irqchip().Pin = KVM_IRQCHIP_IOAPIC, 9
	if e.U[0] != KVM_IRQCHIP_IOAPIC || e.U[1] != 9 {
		t.Errorf("irqchip view wrote %#x", e.U[:2])
	}
}
