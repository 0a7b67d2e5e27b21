package queue

import (
	"fmt"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
)

// Notification suppression (virtio 1.2 §2.7.7, §2.7.10).
//
// Driver → device (kicks): without EVENT_IDX the device sets
// VIRTQ_USED_F_NO_NOTIFY while it is busy and clears it before sleeping;
// with EVENT_IDX it writes avail_event, the avail index whose publication
// should kick it. Device → driver (interrupts): without EVENT_IDX the driver
// sets VIRTQ_AVAIL_F_NO_INTERRUPT; with EVENT_IDX it writes used_event.

// DisableNotify asks the driver not to kick while the device is busy
// draining the queue. With EVENT_IDX there is nothing to do: avail_event
// stays behind and the driver does not kick until EnableNotify moves it.
func (q *Queue) DisableNotify() {
	if !q.eventIdx {
		q.used.store16(0, UsedFNoNotify)
	}
}

// EnableNotify asks the driver to kick on its next available buffer, then
// checks again: it reports whether the driver made buffers available since
// the device last looked (the device must then keep popping instead of
// waiting for a kick that may never come). An error wraps ErrMalformed.
func (q *Queue) EnableNotify() (bool, error) {
	seen := q.seenAvail
	if q.eventIdx {
		q.used.store16(q.availEventOff(), seen)
	} else {
		q.used.store16(0, 0)
	}
	// Both accesses are sequentially consistent atomics: the avail idx is
	// read after the store above is visible (a full barrier on x86-64).
	if _, err := q.pending(); err != nil {
		return false, err
	}
	return q.seenAvail != seen, nil
}

// NeedsInterrupt reports whether the driver wants an interrupt for the used
// elements published since the last call. Call it after Publish.
func (q *Queue) NeedsInterrupt() bool {
	if !q.eventIdx {
		return q.avail.load16(0)&AvailFNoInterrupt == 0
	}
	// Publish stored the used idx with a sequentially consistent atomic, so
	// this read of used_event cannot be satisfied before it: the full
	// barrier the specification requires between the two.
	event := q.avail.load16(q.usedEventOff())
	old, valid := q.signalled, q.signalledValid
	q.signalled, q.signalledValid = q.published, true
	return !valid || NeedEvent(event, q.published, old)
}

// NeedEvent is vring_need_event: whether moving an index from old to new
// crossed event (all arithmetic modulo 2^16).
func NeedEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}

// Interrupt signals call if the driver wants an interrupt for the used
// elements published since the last decision (NeedsInterrupt), and reports
// whether it signalled. Call it after Publish.
func (q *Queue) Interrupt(call *eventfd.EventFD) (bool, error) {
	if !q.NeedsInterrupt() {
		return false, nil
	}
	if err := call.Signal(); err != nil {
		return false, fmt.Errorf("interrupt for queue %d: %w", q.index, err)
	}
	return true, nil
}
