package pci

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
)

// struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3), offsets in the BAR.
const (
	regDeviceFeatureSelect = 0x00
	regDeviceFeature       = 0x04
	regDriverFeatureSelect = 0x08
	regDriverFeature       = 0x0C
	regConfigMSIXVector    = 0x10
	regNumQueues           = 0x12
	regDeviceStatus        = 0x14
	regConfigGeneration    = 0x15
	regQueueSelect         = 0x16
	regQueueSize           = 0x18
	regQueueMSIXVector     = 0x1A
	regQueueEnable         = 0x1C
	regQueueNotifyOff      = 0x1E
	regQueueDesc           = 0x20
	regQueueDriver         = 0x28
	regQueueDevice         = 0x30
)

// Split ring alignment (virtio 1.2 §2.7).
const (
	descAlign   = 16
	driverAlign = 2
	deviceAlign = 4
)

// resetRegisters puts every register back to its power-on value. The
// configuration generation keeps counting, so a driver that cached
// configuration before the reset sees it change.
func (t *Transport) resetRegisters() {
	t.dfSelect, t.gfSelect, t.acked = 0, 0, 0
	t.cfgVector = NoVector
	t.status, t.qSelect, t.isr = 0, 0, 0
	t.queues = make([]queue, len(t.maxSizes))
	for i, s := range t.maxSizes {
		t.queues[i] = queue{size: s, vector: NoVector}
	}
}

func (t *Transport) selected() *queue {
	if int(t.qSelect) < len(t.queues) {
		return &t.queues[t.qSelect]
	}
	return nil
}

// readCommon serves any read inside the common configuration: the
// registers are laid out in a snapshot and the guest gets the bytes it
// asked for, whatever the width and offset.
func (t *Transport) readCommon(off uint64, data []byte) {
	var r [commonLength]byte
	le := binary.LittleEndian
	if t.dfSelect < 2 {
		le.PutUint32(r[regDeviceFeature:], uint32(t.offered>>(32*t.dfSelect)))
	}
	le.PutUint32(r[regDeviceFeatureSelect:], t.dfSelect)
	le.PutUint32(r[regDriverFeatureSelect:], t.gfSelect)
	if t.gfSelect < 2 {
		le.PutUint32(r[regDriverFeature:], uint32(t.acked>>(32*t.gfSelect)))
	}
	le.PutUint16(r[regConfigMSIXVector:], t.cfgVector)
	le.PutUint16(r[regNumQueues:], uint16(len(t.queues)))
	r[regDeviceStatus] = t.status
	r[regConfigGeneration] = t.generation
	le.PutUint16(r[regQueueSelect:], t.qSelect)
	if q := t.selected(); q != nil {
		le.PutUint16(r[regQueueSize:], q.size)
		le.PutUint16(r[regQueueMSIXVector:], q.vector)
		if q.enabled {
			le.PutUint16(r[regQueueEnable:], 1)
		}
		le.PutUint16(r[regQueueNotifyOff:], t.qSelect)
		le.PutUint64(r[regQueueDesc:], q.desc)
		le.PutUint64(r[regQueueDriver:], q.driver)
		le.PutUint64(r[regQueueDevice:], q.device)
	} else {
		le.PutUint16(r[regQueueMSIXVector:], NoVector)
	}
	for i := range data {
		if o := off + uint64(i); o < commonLength {
			data[i] = r[o]
		}
	}
}

// writeCommon applies a driver write. Only natural-width accesses to
// writable fields (and 32- or 64-bit accesses to the 64-bit ones) have an
// effect; anything else is ignored.
func (t *Transport) writeCommon(off uint64, data []byte) {
	var v uint64
	switch len(data) {
	case 1:
		v = uint64(data[0])
	case 2:
		v = uint64(binary.LittleEndian.Uint16(data))
	case 4:
		v = uint64(binary.LittleEndian.Uint32(data))
	case 8:
		v = binary.LittleEndian.Uint64(data)
	default:
		return
	}
	width := len(data)
	switch {
	case off == regDeviceFeatureSelect && width == 4:
		t.dfSelect = uint32(v)
	case off == regDriverFeatureSelect && width == 4:
		t.gfSelect = uint32(v)
	case off == regDriverFeature && width == 4:
		if t.status&virtio.StatusFeaturesOK != 0 || t.gfSelect >= 2 {
			return
		}
		shift := 32 * t.gfSelect
		t.acked = t.acked&^(0xFFFF_FFFF<<shift) | v<<shift
	case off == regConfigMSIXVector && width == 2:
		t.cfgVector = t.checkVector(uint16(v))
	case off == regDeviceStatus && width == 1:
		t.writeStatus(uint8(v))
	case off == regQueueSelect && width == 2:
		t.qSelect = uint16(v)
	case off >= regQueueSize:
		t.writeQueue(off, width, v)
	}
}

func (t *Transport) checkVector(v uint16) uint16 {
	if v != NoVector && int(v) >= t.msix.Vectors() {
		return NoVector // reads back as "no vector": the driver sees the failure
	}
	return v
}

// writeQueue writes a field of the selected queue. Fields are frozen once
// the queue is enabled or the driver is running.
func (t *Transport) writeQueue(off uint64, width int, v uint64) {
	q := t.selected()
	if q == nil || q.enabled || t.status&virtio.StatusDriverOK != 0 {
		return
	}
	i := int(t.qSelect)
	switch {
	case off == regQueueSize && width == 2:
		s := uint16(v)
		if s == 0 || s&(s-1) != 0 || s > t.maxSizes[i] {
			t.log.Debug("ignored bad queue size", "queue", i, "size", s)
			return
		}
		q.size = s
	case off == regQueueMSIXVector && width == 2:
		q.vector = t.checkVector(uint16(v))
	case off == regQueueEnable && width == 2:
		if v != 1 {
			return // writing 0 is forbidden without VIRTIO_F_RING_RESET
		}
		if err := t.checkQueue(i); err != nil {
			t.log.Warn("driver enabled a bad queue", "err", err)
			t.needsReset()
			return
		}
		q.enabled = true
	case off >= regQueueDesc && off < regQueueDevice+8:
		field := [...]*uint64{&q.desc, &q.driver, &q.device}[(off-regQueueDesc)/8]
		switch {
		case width == 8 && off%8 == 0:
			*field = v
		case width == 4 && off%8 == 0:
			*field = *field&^0xFFFF_FFFF | v
		case width == 4:
			*field = *field&0xFFFF_FFFF | v<<32
		}
	}
}

// checkQueue validates queue i as the driver set it up: a power-of-two
// size within the device's limit, aligned rings lying inside guest RAM.
func (t *Transport) checkQueue(i int) error {
	q := &t.queues[i]
	n := uint64(q.size)
	if n == 0 || n&(n-1) != 0 || q.size > t.maxSizes[i] {
		return fmt.Errorf("queue %d: size %d", i, n)
	}
	event := uint64(0)
	if virtio.HasFeature(t.acked, virtio.FeatureEventIdx) {
		event = 2
	}
	rings := []struct {
		name        string
		addr, align uint64
		length      uint64
	}{
		{"descriptor table", q.desc, descAlign, 16 * n},
		{"driver ring", q.driver, driverAlign, 4 + 2*n + event},
		{"device ring", q.device, deviceAlign, 4 + 8*n + event},
	}
	for _, r := range rings {
		if r.addr%r.align != 0 {
			return fmt.Errorf("queue %d: %s at %#x not %d-byte aligned", i, r.name, r.addr, r.align)
		}
		if _, err := t.mem.Slice(r.addr, r.length); err != nil {
			return fmt.Errorf("queue %d: %s: %w", i, r.name, err)
		}
	}
	return nil
}

// writeStatus runs the device status state machine (virtio 1.2 §3.1).
func (t *Transport) writeStatus(v uint8) {
	if v == 0 {
		if err := t.reset(); err != nil {
			t.log.Warn("device reset", "err", err)
		}
		return
	}
	old := t.status
	// The driver cannot clear bits except by resetting, nor set
	// DEVICE_NEEDS_RESET.
	next := old | v&^virtio.StatusDeviceNeedsReset
	if next&virtio.StatusFeaturesOK != 0 && old&virtio.StatusFeaturesOK == 0 {
		if err := t.checkFeatures(); err != nil {
			t.log.Warn("refused FEATURES_OK", "err", err)
			next &^= virtio.StatusFeaturesOK
		}
	}
	if next&virtio.StatusDriverOK != 0 && old&virtio.StatusDriverOK == 0 {
		if next&virtio.StatusFeaturesOK == 0 {
			t.log.Warn("refused DRIVER_OK before FEATURES_OK")
			next &^= virtio.StatusDriverOK
		}
	}
	t.status = next
	if next&virtio.StatusDriverOK != 0 && old&virtio.StatusDriverOK == 0 &&
		next&virtio.StatusDeviceNeedsReset == 0 {
		if err := t.activate(); err != nil {
			t.log.Warn("activate device", "err", err)
			t.needsReset()
		}
	}
}

func (t *Transport) checkFeatures() error {
	if extra := t.acked &^ t.offered; extra != 0 {
		return fmt.Errorf("driver accepted features %#x that were not offered", extra)
	}
	if !virtio.HasFeature(t.acked, virtio.FeatureVersion1) {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not supported)")
	}
	return nil
}

// activate hands the enabled queues to the device: a Kick and a Call
// eventfd each, wired to KVM, then Device.Activate.
func (t *Transport) activate() error {
	if t.closed {
		return errClosed
	}
	var queues []virtio.QueueConfig
	for i := range t.queues {
		q := &t.queues[i]
		if !q.enabled {
			continue
		}
		if err := t.checkQueue(i); err != nil {
			return errors.Join(err, t.release())
		}
		kick, err := eventfd.New()
		if err != nil {
			return errors.Join(fmt.Errorf("queue %d kick: %w", i, err), t.release())
		}
		q.kick = kick
		call, err := eventfd.New()
		if err != nil {
			return errors.Join(fmt.Errorf("queue %d call: %w", i, err), t.release())
		}
		q.call = call
		t.attachKick(i)
		if err := t.bindIRQ(i); err != nil {
			return errors.Join(err, t.release())
		}
		queues = append(queues, virtio.QueueConfig{
			Index: uint16(i), Size: q.size, Desc: q.desc, Driver: q.driver, Device: q.device,
			Kick: kick, Call: call,
		})
	}
	t.active = true
	err := t.dev.Activate(virtio.Activation{
		Features: t.acked,
		Memory:   t.mem,
		Queues:   queues,
		Broken:   t.brokenFunc(t.epoch),
	})
	if err != nil {
		t.active = false
		t.dev.Reset()
		return errors.Join(fmt.Errorf("device activation: %w", err), t.release())
	}
	return nil
}

// release undoes activate: detaches and closes every eventfd and removes
// the MSI routes. The device must already have stopped using them.
func (t *Transport) release() error {
	var errs []error
	for i := range t.queues {
		q := &t.queues[i]
		t.detachKick(i)
		if err := t.unbindIRQ(i); err != nil {
			errs = append(errs, err)
		}
		for _, e := range []*eventfd.EventFD{q.kick, q.call} {
			if e != nil {
				if err := e.Close(); err != nil {
					errs = append(errs, fmt.Errorf("queue %d: %w", i, err))
				}
			}
		}
		q.kick, q.call = nil, nil
	}
	for v, r := range t.routes {
		if err := t.vm.RemoveRoute(r.gsi); err != nil {
			errs = append(errs, fmt.Errorf("remove route of MSI-X vector %d: %w", v, err))
		}
		delete(t.routes, v)
	}
	t.active = false
	return errors.Join(errs...)
}

// reset is the driver writing 0 to device_status (or Close): the device
// stops, everything the activation made is released, registers return to
// their defaults.
func (t *Transport) reset() error {
	t.epoch++
	t.dev.Reset()
	err := t.release()
	t.resetRegisters()
	return err
}
