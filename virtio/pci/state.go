package pci

import (
	"fmt"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
	virtqueue "github.com/hlsvmm/hlsvmm/virtio/queue"
)

// State is a transport's view of its device at one moment, for a person
// finding out why a guest waits on a device: whether the driver finished
// setting it up, and per queue where its doorbells are attached and what
// the rings say. It is read under the transport's lock; the rings are read
// from guest memory while the device, or vhost-net, may be serving them.
type State struct {
	Type       virtio.DeviceID `json:"type"`
	Status     uint8           `json:"status"`
	Features   string          `json:"features"` // accepted by the driver
	Active     bool            `json:"active"`   // DRIVER_OK, the device is serving
	NeedsReset bool            `json:"needs_reset"`
	MSIX       bool            `json:"msix_enabled"`
	Queues     []QueueState    `json:"queues"`
}

// QueueState is one enabled queue. A pending Kick while the device is
// active means its worker missed a doorbell; a pending Call with the irqfd
// attached means KVM did not take an interrupt; a used index ahead of
// used_event that the driver never caught up with means an interrupt was
// not delivered.
type QueueState struct {
	Index         uint16           `json:"index"`
	Size          uint16           `json:"size"`
	Vector        uint16           `json:"vector"`
	VectorMasked  bool             `json:"vector_masked"`
	VectorPending bool             `json:"vector_pending"` // PBA bit
	IOEventFD     bool             `json:"ioeventfd"`      // kick attached to KVM
	IRQFD         bool             `json:"irqfd"`          // call attached to KVM
	KickPending   bool             `json:"kick_pending"`
	CallPending   bool             `json:"call_pending"`
	Rings         *virtqueue.Rings `json:"rings,omitempty"`
	Err           string           `json:"error,omitempty"` // what could not be read
}

// State reports the device's and its queues' state.
func (t *Transport) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := State{
		Type:       t.dev.ID(),
		Status:     t.status,
		Features:   fmt.Sprintf("%#x", t.acked),
		Active:     t.active,
		NeedsReset: t.status&virtio.StatusDeviceNeedsReset != 0,
		MSIX:       t.msix.Enabled(),
	}
	for i := range t.queues {
		q := &t.queues[i]
		if !q.enabled {
			continue
		}
		qs := QueueState{
			Index: uint16(i), Size: q.size, Vector: q.vector,
			IOEventFD: q.ioAttached, IRQFD: q.irqfd,
		}
		if q.vector != NoVector {
			qs.VectorMasked = t.msix.Masked(int(q.vector))
			qs.VectorPending = t.msix.Pending(int(q.vector))
		}
		var errs []string
		pending := func(e *eventfd.EventFD, name string) bool {
			if e == nil {
				return false
			}
			set, err := e.Pending()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			}
			return set
		}
		qs.KickPending = pending(q.kick, "kick")
		qs.CallPending = pending(q.call, "call")
		cfg := virtio.QueueConfig{Index: uint16(i), Size: q.size, Desc: q.desc, Driver: q.driver, Device: q.device}
		if r, err := virtqueue.Peek(t.mem, cfg); err != nil {
			errs = append(errs, err.Error())
		} else {
			qs.Rings = &r
		}
		if len(errs) > 0 {
			qs.Err = fmt.Sprint(errs)
		}
		s.Queues = append(s.Queues, qs)
	}
	return s
}
