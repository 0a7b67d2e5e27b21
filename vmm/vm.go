package vmm

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/vmm/bus"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
	"golang.org/x/sys/unix"
)

// Guest-physical addresses KVM needs for Intel's real-mode emulation (VMX):
// three pages for a TSS and one for an identity-mapped page table, at the
// top of the 32-bit PCI hole where no RAM and no device lives (Firecracker
// uses the same).
const (
	identityMapAddr = 0xfffbc000
	tssAddr         = identityMapAddr + 0x1000
)

// VM is a KVM virtual machine: its memory slots, the in-kernel PIC, IOAPIC
// and PIT, the GSI routing table, and the port-I/O and MMIO buses exits are
// dispatched to.
type VM struct {
	sys *System
	fd  int
	mem *memory.Memory

	pio, mmio bus.Bus

	routeMu sync.Mutex
	routes  *routingTable

	closeOnce sync.Once
	closeErr  error
}

// NewVM creates a VM with mem as its RAM (one memory slot per region), the
// TSS and identity map, the in-kernel irqchip (PIC, IOAPIC, local APICs),
// a PIT with a dummy speaker, and KVM's default GSI routes. mem stays owned
// by the caller and must outlive the VM.
func NewVM(sys *System, mem *memory.Memory) (vm *VM, err error) {
	fd, err := sys.createVM()
	if err != nil {
		return nil, err
	}
	vm = &VM{sys: sys, fd: fd, mem: mem, routes: newRoutingTable()}
	defer func() {
		if err != nil {
			vm.Close()
		}
	}()
	var idmap uint64 = identityMapAddr
	if _, err := uapi.IoctlPtr(fd, uapi.KVM_SET_IDENTITY_MAP_ADDR, unsafe.Pointer(&idmap)); err != nil {
		return nil, fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR %#x: %w", idmap, err)
	}
	if _, err := uapi.Ioctl(fd, uapi.KVM_SET_TSS_ADDR, tssAddr); err != nil {
		return nil, fmt.Errorf("KVM_SET_TSS_ADDR %#x: %w", tssAddr, err)
	}
	if _, err := uapi.Ioctl(fd, uapi.KVM_CREATE_IRQCHIP, 0); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	pit := uapi.KvmPitConfig{Flags: uapi.KVM_PIT_SPEAKER_DUMMY}
	if _, err := uapi.IoctlPtr(fd, uapi.KVM_CREATE_PIT2, unsafe.Pointer(&pit)); err != nil {
		return nil, fmt.Errorf("KVM_CREATE_PIT2: %w", err)
	}
	for i, r := range mem.Regions() {
		region := uapi.KvmUserspaceMemoryRegion{
			Slot:          uint32(i),
			GuestPhysAddr: r.GuestPhys,
			MemorySize:    uint64(len(r.Host)),
			UserspaceAddr: uint64(uintptr(unsafe.Pointer(&r.Host[0]))),
		}
		if _, err := uapi.IoctlPtr(fd, uapi.KVM_SET_USER_MEMORY_REGION, unsafe.Pointer(&region)); err != nil {
			return nil, fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d [%#x, %#x): %w", i, r.GuestPhys, r.End(), err)
		}
	}
	vm.routeMu.Lock()
	err = vm.commitRoutes()
	vm.routeMu.Unlock()
	if err != nil {
		return nil, err
	}
	return vm, nil
}

// Close releases the VM fd. vCPUs must be closed first. Close is idempotent.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		if err := unix.Close(vm.fd); err != nil {
			vm.closeErr = fmt.Errorf("close VM: %w", err)
		}
	})
	return vm.closeErr
}

// Memory is the guest's RAM.
func (vm *VM) Memory() *memory.Memory { return vm.mem }

// PIO is the port-I/O bus: devices registered here see the guest's IN/OUT.
func (vm *VM) PIO() *bus.Bus { return &vm.pio }

// MMIO is the MMIO bus: devices registered here see guest accesses to
// guest-physical addresses that are not RAM.
func (vm *VM) MMIO() *bus.Bus { return &vm.mmio }

// commitRoutes hands the whole routing table to KVM. routeMu must be held.
func (vm *VM) commitRoutes() error {
	buf := routingBufferFrom(vm.routes.entries())
	if _, err := uapi.IoctlPtr(vm.fd, uapi.KVM_SET_GSI_ROUTING, buf.ptr()); err != nil {
		return fmt.Errorf("KVM_SET_GSI_ROUTING (%d routes): %w", buf.n, err)
	}
	return nil
}

// AddMSIRoute routes a new GSI to the MSI message (addr, data) and commits
// the whole table. The GSI is the lowest free one at or above FirstMSIGSI.
func (vm *VM) AddMSIRoute(addr uint64, data uint32) (uint32, error) {
	vm.routeMu.Lock()
	defer vm.routeMu.Unlock()
	gsi, err := vm.routes.add(addr, data)
	if err != nil {
		return 0, fmt.Errorf("add MSI route to %#x/%#x: %w", addr, data, err)
	}
	if err := vm.commitRoutes(); err != nil {
		vm.routes.remove(gsi)
		return 0, fmt.Errorf("add MSI route GSI %d: %w", gsi, err)
	}
	return gsi, nil
}

// UpdateMSIRoute points an existing MSI route at a new message (the guest
// reprogrammed an MSI-X vector) and commits the table.
func (vm *VM) UpdateMSIRoute(gsi uint32, addr uint64, data uint32) error {
	vm.routeMu.Lock()
	defer vm.routeMu.Unlock()
	old, err := vm.routes.update(gsi, addr, data)
	if err != nil {
		return fmt.Errorf("update MSI route: %w", err)
	}
	if err := vm.commitRoutes(); err != nil {
		vm.routes.update(gsi, old.addr, old.data)
		return fmt.Errorf("update MSI route GSI %d: %w", gsi, err)
	}
	return nil
}

// RemoveRoute deletes an MSI route and commits the table. The irqchip
// routes (GSI 0-23) cannot be removed.
func (vm *VM) RemoveRoute(gsi uint32) error {
	vm.routeMu.Lock()
	defer vm.routeMu.Unlock()
	old, err := vm.routes.remove(gsi)
	if err != nil {
		return fmt.Errorf("remove route: %w", err)
	}
	if err := vm.commitRoutes(); err != nil {
		vm.routes.msi[gsi] = old
		return fmt.Errorf("remove route GSI %d: %w", gsi, err)
	}
	return nil
}

// AttachIRQFD makes KVM inject GSI gsi whenever e is signalled.
func (vm *VM) AttachIRQFD(e *eventfd.EventFD, gsi uint32) error {
	irqfd := uapi.KvmIrqfd{Fd: uint32(e.Fd()), GSI: gsi}
	if _, err := uapi.IoctlPtr(vm.fd, uapi.KVM_IRQFD, unsafe.Pointer(&irqfd)); err != nil {
		return fmt.Errorf("KVM_IRQFD attach fd %d to GSI %d: %w", e.Fd(), gsi, err)
	}
	return nil
}

// DetachIRQFD undoes AttachIRQFD.
func (vm *VM) DetachIRQFD(e *eventfd.EventFD, gsi uint32) error {
	irqfd := uapi.KvmIrqfd{Fd: uint32(e.Fd()), GSI: gsi, Flags: uapi.KVM_IRQFD_FLAG_DEASSIGN}
	if _, err := uapi.IoctlPtr(vm.fd, uapi.KVM_IRQFD, unsafe.Pointer(&irqfd)); err != nil {
		return fmt.Errorf("KVM_IRQFD detach fd %d from GSI %d: %w", e.Fd(), gsi, err)
	}
	return nil
}

// SignalMSI injects one MSI (KVM_SIGNAL_MSI). As on real hardware, a
// message no local APIC accepts (a destination that does not exist or has
// its APIC disabled; KVM returns -1, which reads as EPERM) or that the guest
// blocked is dropped, and that is not an error.
func (vm *VM) SignalMSI(addr uint64, data uint32) error {
	msi := uapi.KvmMsi{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data}
	_, err := uapi.IoctlPtr(vm.fd, uapi.KVM_SIGNAL_MSI, unsafe.Pointer(&msi))
	if err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("KVM_SIGNAL_MSI %#x/%#x: %w", addr, data, err)
	}
	return nil
}

// AttachIOEventFD makes a guest write of length bytes (any value) to the
// MMIO address addr signal e inside KVM, without an exit to hlsvmm.
// length 0 matches writes of any width (KVM_CAP_IOEVENTFD_ANY_LENGTH).
func (vm *VM) AttachIOEventFD(e *eventfd.EventFD, addr uint64, length uint32) error {
	ioev := uapi.KvmIoeventfd{Addr: addr, Len: length, Fd: int32(e.Fd())}
	if _, err := uapi.IoctlPtr(vm.fd, uapi.KVM_IOEVENTFD, unsafe.Pointer(&ioev)); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD attach fd %d at %#x/%d: %w", e.Fd(), addr, length, err)
	}
	return nil
}

// DetachIOEventFD undoes AttachIOEventFD.
func (vm *VM) DetachIOEventFD(e *eventfd.EventFD, addr uint64, length uint32) error {
	ioev := uapi.KvmIoeventfd{Addr: addr, Len: length, Fd: int32(e.Fd()), Flags: uapi.KVM_IOEVENTFD_FLAG_DEASSIGN}
	if _, err := uapi.IoctlPtr(vm.fd, uapi.KVM_IOEVENTFD, unsafe.Pointer(&ioev)); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD detach fd %d at %#x/%d: %w", e.Fd(), addr, length, err)
	}
	return nil
}

// SetIRQLine drives GSI irq (a legacy ISA IRQ, routed to the PIC and the
// IOAPIC) high or low (KVM_IRQ_LINE).
func (vm *VM) SetIRQLine(irq uint32, level bool) error {
	l := uapi.KvmIrqLevel{Irq: irq}
	if level {
		l.Level = 1
	}
	if _, err := uapi.IoctlPtr(vm.fd, uapi.KVM_IRQ_LINE, unsafe.Pointer(&l)); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE %d=%d: %w", irq, l.Level, err)
	}
	return nil
}
