package pci

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/bus"
	"github.com/hlsvmm/hlsvmm/vmm/pcibus"
)

// fakeVM records what the transport asks of KVM and is as strict as KVM:
// double attaches, detaching what is not attached and irqfds on unrouted
// GSIs are errors.
type fakeVM struct {
	pio, mmio bus.Bus

	mu       sync.Mutex
	nextGSI  uint32
	routes   map[uint32]pcibus.MSIMessage
	irqfds   map[*eventfd.EventFD]uint32
	ioevents map[uint64]*eventfd.EventFD
	msis     []pcibus.MSIMessage
	updates  int
	failIRQ  error
}

func newFakeVM() *fakeVM {
	return &fakeVM{
		nextGSI:  24, // after the IOAPIC pins, like vmm
		routes:   map[uint32]pcibus.MSIMessage{},
		irqfds:   map[*eventfd.EventFD]uint32{},
		ioevents: map[uint64]*eventfd.EventFD{},
	}
}

var errFake = errors.New("fake KVM refused")

func (v *fakeVM) PIO() *bus.Bus  { return &v.pio }
func (v *fakeVM) MMIO() *bus.Bus { return &v.mmio }

func (v *fakeVM) AddMSIRoute(addr uint64, data uint32) (uint32, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	gsi := v.nextGSI
	v.nextGSI++
	v.routes[gsi] = pcibus.MSIMessage{Addr: addr, Data: data}
	return gsi, nil
}

func (v *fakeVM) UpdateMSIRoute(gsi uint32, addr uint64, data uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.routes[gsi]; !ok {
		return fmt.Errorf("update GSI %d: %w: no route", gsi, errFake)
	}
	v.routes[gsi] = pcibus.MSIMessage{Addr: addr, Data: data}
	v.updates++
	return nil
}

func (v *fakeVM) RemoveRoute(gsi uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.routes[gsi]; !ok {
		return fmt.Errorf("remove GSI %d: %w: no route", gsi, errFake)
	}
	for e, g := range v.irqfds {
		if g == gsi {
			return fmt.Errorf("remove GSI %d: %w: irqfd %d still attached", gsi, errFake, e.Fd())
		}
	}
	delete(v.routes, gsi)
	return nil
}

func (v *fakeVM) AttachIRQFD(e *eventfd.EventFD, gsi uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.failIRQ != nil {
		return v.failIRQ
	}
	if _, ok := v.routes[gsi]; !ok {
		return fmt.Errorf("irqfd on GSI %d: %w: no route", gsi, errFake)
	}
	if _, ok := v.irqfds[e]; ok {
		return fmt.Errorf("irqfd %d: %w: already attached", e.Fd(), errFake)
	}
	v.irqfds[e] = gsi
	return nil
}

func (v *fakeVM) DetachIRQFD(e *eventfd.EventFD, gsi uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if g, ok := v.irqfds[e]; !ok || g != gsi {
		return fmt.Errorf("detach irqfd %d from GSI %d: %w: not attached there", e.Fd(), gsi, errFake)
	}
	delete(v.irqfds, e)
	return nil
}

func (v *fakeVM) SignalMSI(addr uint64, data uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.msis = append(v.msis, pcibus.MSIMessage{Addr: addr, Data: data})
	return nil
}

func (v *fakeVM) AttachIOEventFD(e *eventfd.EventFD, addr uint64, length uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if length != 2 {
		return fmt.Errorf("ioeventfd length %d: %w", length, errFake)
	}
	if _, ok := v.ioevents[addr]; ok {
		return fmt.Errorf("ioeventfd at %#x: %w: address taken", addr, errFake)
	}
	v.ioevents[addr] = e
	return nil
}

func (v *fakeVM) DetachIOEventFD(e *eventfd.EventFD, addr uint64, length uint32) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ioevents[addr] != e || length != 2 {
		return fmt.Errorf("detach ioeventfd at %#x: %w: not attached", addr, errFake)
	}
	delete(v.ioevents, addr)
	return nil
}

func (v *fakeVM) takeMSIs() []pcibus.MSIMessage {
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.msis
	v.msis = nil
	return m
}

// leftovers describes anything still attached or routed.
func (v *fakeVM) leftovers() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.routes)+len(v.irqfds)+len(v.ioevents) == 0 {
		return ""
	}
	return fmt.Sprintf("routes %v irqfds %d ioeventfds %v", v.routes, len(v.irqfds), v.ioevents)
}

// fakeDevice is a virtio.Device that records what the transport does.
type fakeDevice struct {
	id       virtio.DeviceID
	features uint64
	sizes    []uint16

	mu          sync.Mutex
	config      [8]byte
	activations []virtio.Activation
	resets      int
	activateErr error
}

func (d *fakeDevice) ID() virtio.DeviceID     { return d.id }
func (d *fakeDevice) Features() uint64        { return d.features }
func (d *fakeDevice) QueueMaxSizes() []uint16 { return d.sizes }

func (d *fakeDevice) ReadConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range data {
		if o := off + uint64(i); o < uint64(len(d.config)) {
			data[i] = d.config[o]
		} else {
			data[i] = 0
		}
	}
}

func (d *fakeDevice) WriteConfig(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, b := range data {
		if o := off + uint64(i); o >= 6 && o < uint64(len(d.config)) { // bytes 6-7 writable
			d.config[o] = b
		}
	}
}

func (d *fakeDevice) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.activateErr != nil {
		return d.activateErr
	}
	d.activations = append(d.activations, a)
	return nil
}

func (d *fakeDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resets++
}

func (d *fakeDevice) lastActivation() (virtio.Activation, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.activations) == 0 {
		return virtio.Activation{}, 0
	}
	return d.activations[len(d.activations)-1], len(d.activations)
}

func (d *fakeDevice) resetCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resets
}
