package vmm

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/metrics/exits"
	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU: its fd and the kvm_run area mapped from it.
type VCPU struct {
	id      int
	fd      int
	mapping []byte       // the whole mmap'd area; I/O data lives in it too
	run     *uapi.KvmRun // the start of mapping

	kickMu sync.Mutex
	tid    int // OS thread running KVM_RUN, 0 when none

	sampleReq atomic.Bool  // the halt watcher wants a haltState
	sample    atomic.Int32 // the haltState reported

	exits exits.Counters // KVM exits by reason, for the metrics exporter

	closeOnce sync.Once
	closeErr  error
}

// NewVCPU creates vCPU id (KVM_CREATE_VCPU) and maps its kvm_run area.
// With the in-kernel irqchip, vCPU 0 starts runnable and the others wait
// for INIT/SIPI from it.
func (vm *VM) NewVCPU(id int) (*VCPU, error) {
	fd, err := uapi.Ioctl(vm.fd, uapi.KVM_CREATE_VCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	m, err := unix.Mmap(int(fd), 0, vm.sys.VCPUMmapSize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("map kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{id: id, fd: int(fd), mapping: m, run: (*uapi.KvmRun)(unsafe.Pointer(&m[0]))}, nil
}

// ID is the vCPU index (and its APIC id).
func (c *VCPU) ID() int { return c.id }

// Close unmaps kvm_run and closes the vCPU fd. It must not run while the
// vCPU is in KVM_RUN. Close is idempotent.
func (c *VCPU) Close() error {
	c.closeOnce.Do(func() {
		var errs []string
		c.kickMu.Lock() // a late kick must not write into an unmapped kvm_run
		if c.mapping != nil {
			if err := unix.Munmap(c.mapping); err != nil {
				errs = append(errs, fmt.Sprintf("unmap kvm_run: %v", err))
			}
			c.mapping, c.run = nil, nil
		}
		c.kickMu.Unlock()
		if c.fd >= 0 {
			if err := unix.Close(c.fd); err != nil {
				errs = append(errs, fmt.Sprintf("close: %v", err))
			}
		}
		if len(errs) > 0 {
			c.closeErr = fmt.Errorf("vCPU %d: %s", c.id, strings.Join(errs, "; "))
		}
	})
	return c.closeErr
}

// SetCPUID is KVM_SET_CPUID2.
func (c *VCPU) SetCPUID(cpuid CPUID) error {
	buf := cpuidBufferFrom(cpuid)
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_SET_CPUID2, buf.ptr()); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 on vCPU %d (%d entries): %w", c.id, len(cpuid), err)
	}
	return nil
}

// SetMSRs is KVM_SET_MSRS; it fails unless KVM accepted every entry.
func (c *VCPU) SetMSRs(entries []uapi.KvmMsrEntry) error {
	buf := msrsBufferFrom(entries)
	n, err := uapi.IoctlPtr(c.fd, uapi.KVM_SET_MSRS, buf.ptr())
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS on vCPU %d: %w", c.id, err)
	}
	if int(n) != len(entries) {
		return fmt.Errorf("KVM_SET_MSRS on vCPU %d: KVM refused MSR %#x (set %d of %d)",
			c.id, entries[n].Index, n, len(entries))
	}
	return nil
}

// Regs is KVM_GET_REGS.
func (c *VCPU) Regs() (uapi.KvmRegs, error) {
	var r uapi.KvmRegs
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_GET_REGS, unsafe.Pointer(&r)); err != nil {
		return r, fmt.Errorf("KVM_GET_REGS on vCPU %d: %w", c.id, err)
	}
	return r, nil
}

// SetRegs is KVM_SET_REGS.
func (c *VCPU) SetRegs(r uapi.KvmRegs) error {
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_SET_REGS, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_SET_REGS on vCPU %d: %w", c.id, err)
	}
	return nil
}

// Sregs is KVM_GET_SREGS.
func (c *VCPU) Sregs() (uapi.KvmSregs, error) {
	var s uapi.KvmSregs
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_GET_SREGS, unsafe.Pointer(&s)); err != nil {
		return s, fmt.Errorf("KVM_GET_SREGS on vCPU %d: %w", c.id, err)
	}
	return s, nil
}

// SetSregs is KVM_SET_SREGS.
func (c *VCPU) SetSregs(s uapi.KvmSregs) error {
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_SET_SREGS, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_SREGS on vCPU %d: %w", c.id, err)
	}
	return nil
}

// SetupFPU loads the reset FPU state (x87 and SSE exceptions masked).
func (c *VCPU) SetupFPU() error {
	fpu := uapi.KvmFpu{FCW: fpuControlWord, MXCSR: mxcsrDefault}
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_SET_FPU, unsafe.Pointer(&fpu)); err != nil {
		return fmt.Errorf("KVM_SET_FPU on vCPU %d: %w", c.id, err)
	}
	return nil
}

// SetupLINT programs the local APIC's LINT0 as ExtINT and LINT1 as NMI
// (KVM_GET_LAPIC, patch, KVM_SET_LAPIC), as a PC BIOS leaves them.
func (c *VCPU) SetupLINT() error {
	var lapic uapi.KvmLapicState
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_GET_LAPIC, unsafe.Pointer(&lapic)); err != nil {
		return fmt.Errorf("KVM_GET_LAPIC on vCPU %d: %w", c.id, err)
	}
	setLINT(&lapic)
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_SET_LAPIC, unsafe.Pointer(&lapic)); err != nil {
		return fmt.Errorf("KVM_SET_LAPIC on vCPU %d: %w", c.id, err)
	}
	return nil
}

// MPState is KVM_GET_MP_STATE (uapi.KVM_MP_STATE_*).
func (c *VCPU) MPState() (uint32, error) {
	var s uapi.KvmMpState
	if _, err := uapi.IoctlPtr(c.fd, uapi.KVM_GET_MP_STATE, unsafe.Pointer(&s)); err != nil {
		return 0, fmt.Errorf("KVM_GET_MP_STATE on vCPU %d: %w", c.id, err)
	}
	return s.MpState, nil
}

// DumpRegisters formats the vCPU's registers for a fatal-exit report. It
// never fails: what cannot be read is said so.
func (c *VCPU) DumpRegisters() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vCPU %d registers:\n", c.id)
	if r, err := c.Regs(); err != nil {
		fmt.Fprintf(&b, "  %v\n", err)
	} else {
		b.WriteString(formatRegs(r))
	}
	if s, err := c.Sregs(); err != nil {
		fmt.Fprintf(&b, "  %v\n", err)
	} else {
		b.WriteString(formatSregs(s))
	}
	return b.String()
}

func formatRegs(r uapi.KvmRegs) string {
	return fmt.Sprintf(
		"  rip %016x  rflags %016x\n"+
			"  rax %016x  rbx %016x  rcx %016x  rdx %016x\n"+
			"  rsi %016x  rdi %016x  rsp %016x  rbp %016x\n"+
			"  r8  %016x  r9  %016x  r10 %016x  r11 %016x\n"+
			"  r12 %016x  r13 %016x  r14 %016x  r15 %016x\n",
		r.RIP, r.RFLAGS, r.RAX, r.RBX, r.RCX, r.RDX, r.RSI, r.RDI, r.RSP, r.RBP,
		r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15)
}

func formatSregs(s uapi.KvmSregs) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  cr0 %016x  cr2 %016x  cr3 %016x  cr4 %016x\n  efer %016x  apic_base %016x\n",
		s.CR0, s.CR2, s.CR3, s.CR4, s.EFER, s.ApicBase)
	for _, seg := range []struct {
		name string
		s    uapi.KvmSegment
	}{{"cs", s.CS}, {"ds", s.DS}, {"es", s.ES}, {"fs", s.FS}, {"gs", s.GS}, {"ss", s.SS}, {"tr", s.TR}, {"ldt", s.LDT}} {
		fmt.Fprintf(&b, "  %-3s sel %04x base %016x limit %08x type %x p%d dpl%d db%d s%d l%d g%d\n",
			seg.name, seg.s.Selector, seg.s.Base, seg.s.Limit, seg.s.Type, seg.s.Present, seg.s.DPL,
			seg.s.DB, seg.s.S, seg.s.L, seg.s.G)
	}
	fmt.Fprintf(&b, "  gdt base %016x limit %04x  idt base %016x limit %04x\n",
		s.GDT.Base, s.GDT.Limit, s.IDT.Base, s.IDT.Limit)
	return b.String()
}
