// Package pci is the modern (virtio 1.x) virtio-over-PCI transport for any
// virtio.Device: the PCI identity and vendor capabilities, one memory BAR
// with the common configuration, ISR, device configuration, notification
// area and MSI-X table, feature negotiation, queue setup, the status state
// machine and device reset.
//
// Notifications and interrupts bypass hlsvmm once the driver is ready: each
// enabled queue gets a Kick eventfd registered with KVM as an ioeventfd on
// its notify address and a Call eventfd registered as an irqfd on a GSI
// routed to its MSI-X vector's message. The device (or vhost-net) only ever
// sees the two eventfds. While a vector is masked its irqfds are detached
// and interrupts collect in the Call eventfds; they become PBA bits when the
// driver reads the PBA, and an MSI when it unmasks (QEMU's semantics).
//
// The generic PCI parts (configuration space, BARs, MSI-X) live in
// vmm/pcibus; this package holds only what is virtio.
package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
	"github.com/hlsvmm/hlsvmm/vmm/pcibus"
)

// VM is what the transport needs from the hypervisor. *vmm.VM satisfies it.
type VM interface {
	AddMSIRoute(addr uint64, data uint32) (gsi uint32, err error)
	UpdateMSIRoute(gsi uint32, addr uint64, data uint32) error
	RemoveRoute(gsi uint32) error
	AttachIRQFD(e *eventfd.EventFD, gsi uint32) error
	DetachIRQFD(e *eventfd.EventFD, gsi uint32) error
	SignalMSI(addr uint64, data uint32) error
	AttachIOEventFD(e *eventfd.EventFD, addr uint64, length uint32) error
	DetachIOEventFD(e *eventfd.EventFD, addr uint64, length uint32) error
}

// PCI identity of virtio devices (virtio 1.2 §4.1.2).
const (
	VendorID       = 0x1AF4
	DeviceIDBase   = 0x1040 // + virtio device ID, for non-transitional devices
	SubsystemID    = 0x1100
	Revision       = 1
	NoVector       = 0xFFFF // VIRTIO_MSI_NO_VECTOR
	MaxQueues      = 1024
	notifyMultiple = 4 // notify_off_multiplier: queue i is notified at notify + 4*i
)

// Virtio PCI capability types (cfg_type).
const (
	capCommon = 1
	capNotify = 2
	capISR    = 3
	capDevice = 4
)

// Layout of BAR 0. Each structure starts on its own page.
const (
	barIndex     = 0
	commonOffset = 0x0000
	commonLength = 0x40 // struct virtio_pci_common_cfg through the 1.3 admin queue fields
	isrOffset    = 0x1000
	deviceOffset = 0x2000
	deviceLength = 0x1000
	notifyOffset = 0x3000
	pageSize     = 0x1000
)

// ISR bits.
const (
	isrQueue  = 1
	isrConfig = 2
)

// Transport features this transport does not implement; they are never
// offered whatever the device says. Packed rings: virtio.QueueConfig is a
// split queue. Ring reset, notification data, admin queues, SR-IOV: not here.
const unsupportedFeatures = 1<<virtio.FeatureRingPacked | 1<<37 | 1<<38 | 1<<39 | 1<<40 | 1<<41

// Options tune a Transport; nil means defaults.
type Options struct {
	// Logger receives guest mistakes and device failures; nil means slog.Default().
	Logger *slog.Logger
}

type queue struct {
	size    uint16
	vector  uint16
	enabled bool
	desc    uint64
	driver  uint64
	device  uint64

	// Set while the device is active.
	kick, call *eventfd.EventFD
	ioAddr     uint64 // where kick is attached as an ioeventfd
	ioAttached bool
	irqGSI     uint32 // where call is attached as an irqfd
	irqfd      bool
}

type route struct {
	gsi uint32
	msg pcibus.MSIMessage
}

// Transport exposes one virtio.Device as a PCI function. It implements
// pcibus.Device; add it to a pcibus.Bus.
type Transport struct {
	dev      virtio.Device
	vm       VM
	mem      *memory.Memory
	log      *slog.Logger
	cs       *pcibus.ConfigSpace
	msix     *pcibus.MSIX
	offered  uint64
	maxSizes []uint16
	barSize  uint64
	tableOff uint64
	pbaOff   uint64

	mu         sync.Mutex
	barAddr    uint64
	barMapped  bool
	dfSelect   uint32
	gfSelect   uint32
	acked      uint64 // driver_feature
	cfgVector  uint16
	status     uint8
	generation uint8
	qSelect    uint16
	isr        uint8
	queues     []queue
	active     bool
	epoch      uint64 // bumped on every reset: stale Broken calls are ignored
	routes     map[int]*route
	closed     bool
}

// New builds the PCI function for dev. mem is guest RAM, handed to the
// device on activation and used to check ring addresses.
func New(dev virtio.Device, vm VM, mem *memory.Memory, opts *Options) (*Transport, error) {
	if opts == nil {
		opts = &Options{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	id := dev.ID()
	maxSizes := append([]uint16(nil), dev.QueueMaxSizes()...)
	if len(maxSizes) > MaxQueues {
		return nil, fmt.Errorf("virtio-pci for device type %d: %d queues, at most %d", id, len(maxSizes), MaxQueues)
	}
	for i, s := range maxSizes {
		if s == 0 || s&(s-1) != 0 || s > 32768 {
			return nil, fmt.Errorf("virtio-pci for device type %d: queue %d maximum size %d is not a power of two up to 32768", id, i, s)
		}
	}
	t := &Transport{
		dev:      dev,
		vm:       vm,
		mem:      mem,
		log:      log.With("virtio", id),
		offered:  dev.Features()&^unsupportedFeatures | 1<<virtio.FeatureVersion1,
		maxSizes: maxSizes,
		routes:   map[int]*route{},
	}
	vectors := len(maxSizes) + 1 // one per queue plus configuration changes
	notifyLen := uint64(max(len(maxSizes), 1) * notifyMultiple)
	t.tableOff = notifyOffset + alignPage(notifyLen)
	t.pbaOff = t.tableOff + alignPage(uint64(vectors*pcibus.MSIXEntrySize))
	end := t.pbaOff + alignPage(uint64((vectors+63)/64*8))
	t.barSize = 1 << bits.Len64(end-1)

	t.cs = pcibus.NewConfigSpace(pcibus.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceIDBase + uint16(id),
		Revision:          Revision,
		Class:             classOf(id),
		SubsystemVendorID: VendorID,
		SubsystemID:       SubsystemID,
	})
	if err := t.cs.AddBAR(barIndex, pcibus.BAR{Size: t.barSize}); err != nil {
		return nil, fmt.Errorf("virtio-pci BAR: %w", err)
	}
	msix, err := pcibus.AddMSIX(t.cs, pcibus.MSIXConfig{
		Vectors: vectors, TableBAR: barIndex, TableOffset: uint32(t.tableOff),
		PBABAR: barIndex, PBAOffset: uint32(t.pbaOff),
		Lock: &t.mu, Sender: vm, Listener: (*msixListener)(t), Logger: t.log,
	})
	if err != nil {
		return nil, fmt.Errorf("virtio-pci: %w", err)
	}
	t.msix = msix
	caps := []struct {
		typ           byte
		offset, lngth uint32
	}{
		{capCommon, commonOffset, commonLength},
		{capISR, isrOffset, 1},
		{capDevice, deviceOffset, deviceLength},
		{capNotify, notifyOffset, uint32(notifyLen)},
	}
	for _, c := range caps {
		// struct virtio_pci_cap after cap_vndr and cap_next.
		body := make([]byte, 14, 18)
		body[0] = byte(len(body) + 2) // cap_len
		body[1] = c.typ
		body[2] = barIndex
		binary.LittleEndian.PutUint32(body[6:], c.offset)
		binary.LittleEndian.PutUint32(body[10:], c.lngth)
		if c.typ == capNotify {
			body = binary.LittleEndian.AppendUint32(body, notifyMultiple)
			body[0] = byte(len(body) + 2)
		}
		if _, err := t.cs.AddCapability(pcibus.CapVendor, body, nil); err != nil {
			return nil, fmt.Errorf("virtio-pci capability %d: %w", c.typ, err)
		}
	}
	t.resetRegisters()
	return t, nil
}

func alignPage(n uint64) uint64 { return (n + pageSize - 1) &^ (pageSize - 1) }

func classOf(id virtio.DeviceID) uint32 {
	switch id {
	case virtio.DeviceNet:
		return 0x020000 // Ethernet controller
	case virtio.DeviceBlock:
		return 0x010000 // SCSI storage controller, as QEMU
	default:
		return 0x00FF00 // unclassified
	}
}

// Config implements pcibus.Device.
func (t *Transport) Config() *pcibus.ConfigSpace { return t.cs }

// BARMapped implements pcibus.Device: the notify addresses move with the
// BAR, so attached ioeventfds move too.
func (t *Transport) BARMapped(bar int, addr uint64, mapped bool) {
	if bar != barIndex {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.barAddr, t.barMapped = addr, mapped
	if !t.active {
		return
	}
	for i := range t.queues {
		q := &t.queues[i]
		if q.kick == nil {
			continue
		}
		t.detachKick(i)
		t.attachKick(i)
	}
}

func (t *Transport) notifyAddr(i int) uint64 {
	return t.barAddr + notifyOffset + uint64(i)*notifyMultiple
}

func (t *Transport) attachKick(i int) {
	q := &t.queues[i]
	if !t.barMapped || q.ioAttached {
		return
	}
	addr := t.notifyAddr(i)
	if err := t.vm.AttachIOEventFD(q.kick, addr, 2); err != nil {
		// Notifications still reach the kick through the MMIO exit path.
		t.log.Warn("attach ioeventfd; queue notifications go through userspace",
			"queue", i, "addr", fmt.Sprintf("%#x", addr), "err", err)
		return
	}
	q.ioAddr, q.ioAttached = addr, true
}

func (t *Transport) detachKick(i int) {
	q := &t.queues[i]
	if !q.ioAttached {
		return
	}
	if err := t.vm.DetachIOEventFD(q.kick, q.ioAddr, 2); err != nil {
		t.log.Warn("detach ioeventfd", "queue", i, "err", err)
	}
	q.ioAttached = false
}

// ReadBAR implements pcibus.Device.
func (t *Transport) ReadBAR(bar int, off uint64, data []byte) {
	clear(data)
	if bar != barIndex {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case off < commonOffset+commonLength:
		t.readCommon(off, data)
	case off >= isrOffset && off < isrOffset+pageSize:
		if off == isrOffset {
			data[0] = t.isr
			t.isr = 0
		}
	case off >= deviceOffset && off < deviceOffset+deviceLength:
		t.dev.ReadConfig(off-deviceOffset, data)
	case off >= t.tableOff && off < t.tableOff+t.msix.TableSize():
		t.msix.ReadTable(off-t.tableOff, data)
	case off >= t.pbaOff && off < t.pbaOff+t.msix.PBASize():
		t.pollMasked()
		t.msix.ReadPBA(off-t.pbaOff, data)
	}
}

// WriteBAR implements pcibus.Device.
func (t *Transport) WriteBAR(bar int, off uint64, data []byte) {
	if bar != barIndex {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case off < commonOffset+commonLength:
		t.writeCommon(off, data)
	case off >= deviceOffset && off < deviceOffset+deviceLength:
		t.dev.WriteConfig(off-deviceOffset, data)
	case off >= notifyOffset && off < notifyOffset+uint64(len(t.queues))*notifyMultiple:
		t.notifyFromUserspace(int((off - notifyOffset) / notifyMultiple))
	case off >= t.tableOff && off < t.tableOff+t.msix.TableSize():
		t.msix.WriteTable(off-t.tableOff, data)
	}
}

// notifyFromUserspace handles a notification that did not go to an
// ioeventfd: before DRIVER_OK (ignored, as the device is not running), or
// when the ioeventfd could not be attached or the write's width did not
// match it.
func (t *Transport) notifyFromUserspace(i int) {
	if !t.active {
		return
	}
	if k := t.queues[i].kick; k != nil {
		if err := k.Signal(); err != nil {
			t.log.Warn("relay queue notification", "queue", i, "err", err)
		}
	}
}

// Close resets the device and releases every eventfd and route. The
// transport keeps answering the guest, as a device whose driver must start
// over. It is idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return t.reset()
}

// brokenFunc returns the Broken callback for the activation of epoch.
func (t *Transport) brokenFunc(epoch uint64) func(error) {
	return func(err error) {
		// The device may call this from Activate or from a worker that
		// Reset is waiting for, both with t.mu held: never block here.
		go t.markBroken(epoch, err)
	}
}

func (t *Transport) markBroken(epoch uint64, cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if epoch != t.epoch || !t.active {
		return
	}
	t.log.Warn("device needs reset", "err", cause)
	t.needsReset()
}

// ConfigChanged tells the driver that the device configuration changed
// (a link came up, a disk grew): config_generation moves on and the
// configuration vector fires.
func (t *Transport) ConfigChanged() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.configChanged()
}

// needsReset sets DEVICE_NEEDS_RESET and raises a configuration change.
func (t *Transport) needsReset() {
	t.status |= virtio.StatusDeviceNeedsReset
	t.configChanged()
}

func (t *Transport) configChanged() {
	t.generation++
	t.isr |= isrConfig
	if t.cfgVector == NoVector {
		return
	}
	if err := t.msix.Notify(int(t.cfgVector)); err != nil {
		t.log.Warn("configuration change interrupt", "err", err)
	}
}

var errClosed = errors.New("virtio-pci transport closed")
