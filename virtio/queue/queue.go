// Package queue is the device side of a virtio split virtqueue (virtio 1.2
// §2.7) over guest memory: it pops descriptor chains the driver made
// available, validating every descriptor, and returns them through the used
// ring, deciding when the driver needs an interrupt.
//
// Everything in the rings is written by the guest and therefore untrusted.
// The queue turns guest-physical ranges into host memory only through
// memory.Memory.Slice, so a hostile driver can make Pop return an error but
// never make it touch memory outside guest RAM.
//
// Ring words shared with a concurrently running driver (the avail and used
// indexes and flags, used_event and avail_event) are accessed with sync/atomic
// through the naturally aligned 32-bit word containing them; Go's atomics are
// sequentially consistent, which gives the acquire/release ordering around
// the indexes and the full barrier between publishing the used index and
// reading used_event that the specification requires. The layout code assumes
// a little-endian host (x86-64, arm64), like virtio 1.x itself.
//
// A Queue is not safe for concurrent use: one goroutine serves one queue.
package queue

import (
	"errors"
	"fmt"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// MaxSize is the largest split virtqueue the specification allows.
const MaxSize = 32768

// Descriptor flags (struct virtq_desc.flags).
const (
	DescFNext     = 1 // VIRTQ_DESC_F_NEXT
	DescFWrite    = 2 // VIRTQ_DESC_F_WRITE: device-writable
	DescFIndirect = 4 // VIRTQ_DESC_F_INDIRECT
)

// Ring flags.
const (
	AvailFNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT, set by the driver
	UsedFNoNotify     = 1 // VIRTQ_USED_F_NO_NOTIFY, set by the device
)

// Sizes of ring structures in bytes.
const (
	DescSize     = 16 // struct virtq_desc
	UsedElemSize = 8  // struct virtq_used_elem
)

// Errors, matched with errors.Is. New fails with ErrSize, ErrAlign or ErrRing
// (a misconfigured queue: the transport refuses it). Every error from Pop and
// EnableNotify is the guest's doing and wraps ErrMalformed plus the specific
// kind, so a device marks itself NEEDS_RESET on ErrMalformed.
var (
	ErrSize        = errors.New("invalid queue size")
	ErrAlign       = errors.New("misaligned ring")
	ErrRing        = errors.New("ring outside guest RAM")
	ErrMalformed   = errors.New("malformed virtqueue")
	ErrAvailIndex  = errors.New("available index ran ahead of the queue")
	ErrDescIndex   = errors.New("descriptor index out of range")
	ErrDescBuffer  = errors.New("descriptor buffer outside guest RAM")
	ErrChainLength = errors.New("descriptor chain too long or looping")
	ErrChainSize   = errors.New("descriptor chain total length overflows")
	ErrDescOrder   = errors.New("device-readable descriptor after a device-writable one")
	ErrIndirect    = errors.New("invalid indirect descriptor")
	ErrUsedID      = errors.New("used element for a descriptor the queue does not have")
)

// Queue is one split virtqueue as the device sees it.
type Queue struct {
	index    uint16
	size     uint16
	mem      *memory.Memory
	indirect bool // VIRTIO_F_INDIRECT_DESC negotiated
	eventIdx bool // VIRTIO_F_EVENT_IDX negotiated

	desc  []byte // descriptor table, size*16 bytes
	avail ring   // flags, idx, ring[size], used_event
	used  ring   // flags, idx, ring[size] of {id, len}, avail_event

	lastAvail uint16 // next avail ring slot the device will consume
	seenAvail uint16 // avail idx as last read by the device
	nextUsed  uint16 // next used ring slot, == used idx once published
	published uint16 // used idx the driver can see

	signalled      uint16 // used idx at the last interrupt decision
	signalledValid bool
}

// New validates cfg against mem and the negotiated features and returns the
// queue, ready to pop from avail index 0. The size must be a power of two no
// larger than MaxSize; the descriptor table must be 16-byte aligned, the
// driver ring 2-byte and the device ring 4-byte aligned, each wholly inside
// one region of guest RAM.
func New(mem *memory.Memory, cfg virtio.QueueConfig, features uint64) (*Queue, error) {
	q := &Queue{
		index:    cfg.Index,
		size:     cfg.Size,
		mem:      mem,
		indirect: virtio.HasFeature(features, virtio.FeatureIndirectDesc),
		eventIdx: virtio.HasFeature(features, virtio.FeatureEventIdx),
	}
	if err := checkSize(cfg); err != nil {
		return nil, err
	}
	n := uint64(cfg.Size)
	for _, a := range []struct {
		name  string
		addr  uint64
		align uint64
	}{{"descriptor table", cfg.Desc, 16}, {"driver ring", cfg.Driver, 2}, {"device ring", cfg.Device, 4}} {
		if a.addr%a.align != 0 {
			return nil, fmt.Errorf("queue %d: %w: %s at %#x (want %d-byte alignment)", cfg.Index, ErrAlign, a.name, a.addr, a.align)
		}
	}
	var err error
	if q.desc, err = mem.Slice(cfg.Desc, DescSize*n); err != nil {
		return nil, fmt.Errorf("queue %d: %w: descriptor table: %w", cfg.Index, ErrRing, err)
	}
	if q.avail, q.used, err = mapRings(mem, cfg); err != nil {
		return nil, err
	}
	// The device owns the used ring: start from a clean state in case the
	// driver left garbage in it.
	q.used.store16(0, 0)
	q.used.store16(2, 0)
	q.used.store16(q.availEventOff(), 0)
	return q, nil
}

// checkSize refuses a queue size that is not a power of two up to MaxSize.
func checkSize(cfg virtio.QueueConfig) error {
	n := uint64(cfg.Size)
	if n == 0 || n > MaxSize || n&(n-1) != 0 {
		return fmt.Errorf("queue %d: %w: %d (want a power of two up to %d)", cfg.Index, ErrSize, n, MaxSize)
	}
	return nil
}

// Ring layout (virtio 1.2 §2.7.6, §2.7.8): flags, idx, ring[size], then
// the event field (used_event in the driver ring, avail_event in the
// device ring).
func driverRingLen(size uint16) uint64 { return 6 + 2*uint64(size) }
func deviceRingLen(size uint16) uint64 { return 6 + UsedElemSize*uint64(size) }
func usedEventOff(size uint16) int     { return 4 + 2*int(size) }
func availEventOff(size uint16) int    { return 4 + UsedElemSize*int(size) }

// mapRings returns host views of the driver and device rings cfg places.
func mapRings(mem *memory.Memory, cfg virtio.QueueConfig) (avail, used ring, err error) {
	if avail, err = newRing(mem, cfg.Driver, driverRingLen(cfg.Size)); err != nil {
		return ring{}, ring{}, fmt.Errorf("queue %d: driver ring: %w", cfg.Index, err)
	}
	if used, err = newRing(mem, cfg.Device, deviceRingLen(cfg.Size)); err != nil {
		return ring{}, ring{}, fmt.Errorf("queue %d: device ring: %w", cfg.Index, err)
	}
	return avail, used, nil
}

func (q *Queue) usedEventOff() int  { return usedEventOff(q.size) }
func (q *Queue) availEventOff() int { return availEventOff(q.size) }

// pending reads the avail index and returns how many chains the driver has
// made available beyond the ones already popped.
func (q *Queue) pending() (uint16, error) {
	avail := q.avail.load16(2)
	n := avail - q.lastAvail
	if n > q.size {
		return 0, q.malformed(ErrAvailIndex, "avail idx %d, device at %d, queue size %d", avail, q.lastAvail, q.size)
	}
	q.seenAvail = avail
	return n, nil
}

// Pop takes the next available chain into c, reusing c's slices. It returns
// false (and leaves c alone) when the driver has made nothing new available.
// An error wraps ErrMalformed: the queue is unusable until the device is
// reset.
func (q *Queue) Pop(c *Chain) (bool, error) {
	n, err := q.pending()
	if err != nil || n == 0 {
		return false, err
	}
	// The atomic load of the avail idx above orders this read after it.
	head := q.avail.plain16(4 + 2*int(q.lastAvail%q.size))
	if err := q.walk(head, c); err != nil {
		return false, err
	}
	q.lastAvail++
	return true, nil
}

// UndoPop gives back the last n popped chains, not yet returned with
// PutUsed, so the next Pop returns them again (a device that cannot use
// them yet, e.g. no room for a whole frame).
func (q *Queue) UndoPop(n int) { q.lastAvail -= uint16(n) }

// PutUsed writes a used element for the chain at head that the device wrote
// n bytes into. The driver sees it only after Publish.
func (q *Queue) PutUsed(head uint16, n uint32) error {
	if head >= q.size {
		return fmt.Errorf("queue %d: %w: head %d, size %d", q.index, ErrUsedID, head, q.size)
	}
	off := 4 + UsedElemSize*int(q.nextUsed%q.size)
	q.used.putPlain32(off, uint32(head))
	q.used.putPlain32(off+4, n)
	q.nextUsed++
	return nil
}

// Publish makes every used element put so far visible to the driver by
// storing the used index (atomically, after the elements and the data the
// device wrote into the buffers).
func (q *Queue) Publish() {
	q.used.store16(2, q.nextUsed)
	q.published = q.nextUsed
}

// AddUsed is PutUsed followed by Publish.
func (q *Queue) AddUsed(head uint16, n uint32) error {
	if err := q.PutUsed(head, n); err != nil {
		return err
	}
	q.Publish()
	return nil
}

// Index is the queue number from the configuration.
func (q *Queue) Index() uint16 { return q.index }

// Size is the number of descriptors.
func (q *Queue) Size() uint16 { return q.size }

// EventIdx reports whether VIRTIO_F_EVENT_IDX is in use.
func (q *Queue) EventIdx() bool { return q.eventIdx }

// malformed wraps a guest-caused error with ErrMalformed and kind.
func (q *Queue) malformed(kind error, format string, args ...any) error {
	return fmt.Errorf("queue %d: %w: %w: %s", q.index, ErrMalformed, kind, fmt.Sprintf(format, args...))
}
