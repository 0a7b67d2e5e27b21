// Package pcibus is a conventional PCI bus 0 for the guest: configuration
// mechanism #1 on I/O ports 0xCF8-0xCFF, a host bridge at 00:00.0 (which is
// what makes Linux trust type 1 configuration access on a machine without
// ACPI), memory BARs placed in the 32-bit PCI hole and registered on the
// MMIO bus, capability lists and MSI-X.
//
// The package knows nothing about what the functions are: a function is a
// Device with a ConfigSpace and handlers for its BARs. virtio/pci builds
// virtio devices on top of it.
package pcibus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

// Configuration mechanism #1 ports.
const (
	ConfigAddressPort = 0xCF8
	ConfigDataPort    = 0xCFC
	configPortsSize   = 8
)

// Default window for BARs: the 32-bit hole from 3 GiB up to the IOAPIC at
// 0xFEC00000 (the LAPIC follows at 0xFEE00000).
const (
	DefaultWindowStart uint64 = 0xC000_0000
	DefaultWindowEnd   uint64 = 0xFEC0_0000
)

// Host bridge identity: Intel's ID for a virtual PCIe host bridge, as
// Cloud Hypervisor uses; no Linux quirk matches it.
const (
	HostBridgeVendor = 0x8086
	HostBridgeDevice = 0x0D57
	ClassHostBridge  = 0x060000
)

// MaxDevices is the number of device numbers on bus 0; 0 is the host bridge.
const MaxDevices = 32

// ErrBusFull is returned by Add when all device numbers or the BAR window
// are used up.
var ErrBusFull = errors.New("PCI bus full")

// VM is what the bus needs from the hypervisor: the port I/O bus for the
// configuration ports and the MMIO bus for BARs. *vmm.VM satisfies it.
type VM interface {
	PIO() *bus.Bus
	MMIO() *bus.Bus
}

// Device is one PCI function (function 0 of its device number).
type Device interface {
	// Config returns the function's configuration space. The Bus calls it
	// once in Add; from then on only the Bus reads and writes it.
	Config() *ConfigSpace
	// ReadBAR and WriteBAR serve a guest access at offset inside memory
	// BAR bar. They run on vCPU goroutines, concurrently with each other
	// and with configuration cycles: the device does its own locking.
	ReadBAR(bar int, offset uint64, data []byte)
	WriteBAR(bar int, offset uint64, data []byte)
	// BARMapped tells the device that BAR bar now decodes at addr (mapped)
	// or stopped decoding (mapped false, addr is the old address), after
	// the Bus moved the MMIO registration. It runs under the Bus's
	// configuration lock and must not call back into the Bus.
	BARMapped(bar int, addr uint64, mapped bool)
}

// Options tune a Bus; the zero value (or nil) means the defaults.
type Options struct {
	// WindowStart and WindowEnd bound the guest-physical range where BARs
	// are placed. Both zero means [DefaultWindowStart, DefaultWindowEnd).
	WindowStart, WindowEnd uint64
	// Logger receives debug messages about guest-driven BAR moves.
	Logger *slog.Logger
}

type mapping struct {
	base   uint64
	mapped bool
}

type function struct {
	dev     Device
	cs      *ConfigSpace
	mapping [numBARs]mapping
}

// Bus is PCI bus 0. Configuration cycles are serialized by one lock.
type Bus struct {
	pio, mmio *bus.Bus
	log       *slog.Logger

	mu      sync.Mutex
	address uint32 // CONFIG_ADDRESS
	devices [MaxDevices]*function
	next    uint64 // next free address in the window
	end     uint64
}

// New creates bus 0 with its host bridge and registers the configuration
// ports on vm.PIO().
func New(vm VM, opts *Options) (*Bus, error) {
	if opts == nil {
		opts = &Options{}
	}
	start, end := opts.WindowStart, opts.WindowEnd
	if start == 0 && end == 0 {
		start, end = DefaultWindowStart, DefaultWindowEnd
	}
	if end <= start {
		return nil, fmt.Errorf("PCI BAR window [%#x, %#x) is empty", start, end)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Bus{pio: vm.PIO(), mmio: vm.MMIO(), log: log, next: start, end: end}
	hb := NewConfigSpace(Header{VendorID: HostBridgeVendor, DeviceID: HostBridgeDevice, Class: ClassHostBridge})
	b.devices[0] = &function{dev: hostBridge{hb}, cs: hb}
	if err := b.pio.Register(ConfigAddressPort, configPortsSize, configPorts{b}); err != nil {
		return nil, fmt.Errorf("register PCI configuration ports: %w", err)
	}
	return b, nil
}

// Add plugs dev in at the lowest free device number, places its BARs in the
// window, turns memory decoding on (as firmware would) and registers the
// BARs on the MMIO bus. It returns the device number.
func (b *Bus) Add(dev Device) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	slot := -1
	for i := 1; i < MaxDevices; i++ {
		if b.devices[i] == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		return 0, fmt.Errorf("add PCI device: %w: all %d device numbers used", ErrBusFull, MaxDevices-1)
	}
	cs := dev.Config()
	next := b.next
	var addrs [numBARs]uint64
	for i := range numBARs {
		bar, ok := cs.bar(i)
		if !ok {
			continue
		}
		base := (next + bar.Size - 1) &^ (bar.Size - 1)
		if base < next || base+bar.Size > b.end || base+bar.Size < base {
			return 0, fmt.Errorf("add PCI device %02x: BAR %d of %#x bytes: %w: window ends at %#x",
				slot, i, bar.Size, ErrBusFull, b.end)
		}
		addrs[i] = base
		next = base + bar.Size
	}
	f := &function{dev: dev, cs: cs}
	for i := range numBARs {
		if _, ok := cs.bar(i); ok {
			cs.setBARAddress(i, addrs[i])
		}
	}
	cs.setCommand(cs.Command() | CommandMemory)
	b.next = next
	b.devices[slot] = f
	b.syncBARs(f)
	return slot, nil
}

// syncBARs makes the MMIO registrations match what the function's
// configuration space decodes and tells the device about every change.
func (b *Bus) syncBARs(f *function) {
	memOn := f.cs.Command()&CommandMemory != 0
	for i := range numBARs {
		bar, ok := f.cs.bar(i)
		if !ok {
			continue
		}
		base := f.cs.barAddress(i)
		want := memOn && base != 0 && base+bar.Size > base
		cur := f.mapping[i]
		if cur.mapped && want && cur.base == base || !cur.mapped && !want {
			continue
		}
		if cur.mapped {
			b.mmio.Unregister(cur.base)
			f.mapping[i] = mapping{}
			f.dev.BARMapped(i, cur.base, false)
		}
		if !want {
			continue
		}
		if err := b.mmio.Register(base, bar.Size, barHandler{f.dev, i}); err != nil {
			// The guest placed the BAR over something else; like a
			// conflicting decode on real hardware, it simply does not work.
			b.log.Debug("PCI BAR not mapped", "bar", i, "addr", fmt.Sprintf("%#x", base), "err", err)
			continue
		}
		f.mapping[i] = mapping{base: base, mapped: true}
		f.dev.BARMapped(i, base, true)
	}
}

// target decodes CONFIG_ADDRESS: the function addressed, or nil when the
// enable bit is clear or nothing is there.
func (b *Bus) target() (*function, int) {
	a := b.address
	if a&(1<<31) == 0 {
		return nil, 0
	}
	busNr, dev, fn := (a>>16)&0xFF, (a>>11)&0x1F, (a>>8)&0x7
	if busNr != 0 || fn != 0 {
		return nil, 0
	}
	return b.devices[dev], int(a & 0xFC)
}

func (b *Bus) configRead(port uint64, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if port < 4 {
		if port == 0 && len(data) == 4 {
			binary.LittleEndian.PutUint32(data, b.address)
		} else {
			fill(data, 0xFF)
		}
		return
	}
	f, reg := b.target()
	if f == nil {
		fill(data, 0xFF)
		return
	}
	f.cs.Read(reg+int(port-4), data)
}

func (b *Bus) configWrite(port uint64, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if port < 4 {
		// Only a 32-bit write is CONFIG_ADDRESS; Linux's probe pokes a byte
		// at 0xCFB first and expects it to change nothing. Reserved bits
		// 30:24 and 1:0 read as zero.
		if port == 0 && len(data) == 4 {
			b.address = binary.LittleEndian.Uint32(data) & 0x80FF_FFFC
		}
		return
	}
	f, reg := b.target()
	if f == nil {
		return
	}
	f.cs.Write(reg+int(port-4), data)
	b.syncBARs(f)
}

func fill(data []byte, v byte) {
	for i := range data {
		data[i] = v
	}
}

type configPorts struct{ b *Bus }

func (p configPorts) Read(off uint64, data []byte)  { p.b.configRead(off, data) }
func (p configPorts) Write(off uint64, data []byte) { p.b.configWrite(off, data) }

type barHandler struct {
	dev Device
	bar int
}

func (h barHandler) Read(off uint64, data []byte)  { h.dev.ReadBAR(h.bar, off, data) }
func (h barHandler) Write(off uint64, data []byte) { h.dev.WriteBAR(h.bar, off, data) }

// hostBridge is 00:00.0: identity only, no BARs.
type hostBridge struct{ cs *ConfigSpace }

func (h hostBridge) Config() *ConfigSpace       { return h.cs }
func (hostBridge) ReadBAR(int, uint64, []byte)  {}
func (hostBridge) WriteBAR(int, uint64, []byte) {}
func (hostBridge) BARMapped(int, uint64, bool)  {}
