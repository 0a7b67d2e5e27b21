package queue

import (
	"fmt"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// Rings is what a queue's rings say at one moment, for diagnostics: the
// driver ring's flags, index and used_event, the device ring's flags,
// index and avail_event. Each word is read atomically, not all at one
// instant. The event fields mean something only with VIRTIO_F_EVENT_IDX.
type Rings struct {
	AvailFlags uint16 `json:"avail_flags"`
	AvailIdx   uint16 `json:"avail_idx"`
	UsedEvent  uint16 `json:"used_event"`
	UsedFlags  uint16 `json:"used_flags"`
	UsedIdx    uint16 `json:"used_idx"`
	AvailEvent uint16 `json:"avail_event"`
}

// Peek reads the rings cfg describes without a Queue, so whoever holds the
// queue's configuration (the transport) can show them while another
// goroutine, or vhost-net, serves the queue. It only reads.
func Peek(mem *memory.Memory, cfg virtio.QueueConfig) (Rings, error) {
	if err := checkSize(cfg); err != nil {
		return Rings{}, fmt.Errorf("peek: %w", err)
	}
	avail, used, err := mapRings(mem, cfg)
	if err != nil {
		return Rings{}, fmt.Errorf("peek: %w", err)
	}
	return Rings{
		AvailFlags: avail.load16(0),
		AvailIdx:   avail.load16(2),
		UsedEvent:  avail.load16(usedEventOff(cfg.Size)),
		UsedFlags:  used.load16(0),
		UsedIdx:    used.load16(2),
		AvailEvent: used.load16(availEventOff(cfg.Size)),
	}, nil
}
