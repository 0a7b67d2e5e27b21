package virtiotest

import (
	"encoding/binary"
	"time"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
)

// Descriptor flags, as the driver writes them.
const (
	Next     = 1
	Write    = 2
	Indirect = 4
)

// Queue is the driver side of one split virtqueue.
type Queue struct {
	g                 *Guest
	Index, Size       uint16
	Desc, Avail, Used uint64 // guest-physical ring addresses
	Kick, Call        *eventfd.EventFD

	availIdx uint16 // driver's avail idx
	lastUsed uint16 // next used element the driver will read
	free     []uint16
	chains   map[uint16][]uint16 // head → descriptors, for freeing
}

// NewQueue lays out a queue of size descriptors and makes its Kick and Call
// eventfds (closed at the end of the test).
func (g *Guest) NewQueue(index, size uint16) *Queue {
	g.t.Helper()
	n := uint64(size)
	q := &Queue{
		g: g, Index: index, Size: size,
		Desc:   g.Alloc(16*n, 4096),
		Avail:  g.Alloc(6+2*n+4, 4096),
		Used:   g.Alloc(6+8*n+4, 4096),
		chains: make(map[uint16][]uint16),
	}
	for i := range size {
		q.free = append(q.free, i)
	}
	var err error
	if q.Kick, err = eventfd.New(); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { q.Kick.Close() })
	if q.Call, err = eventfd.New(); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { q.Call.Close() })
	return q
}

// Config is the queue as a transport would hand it to a device.
func (q *Queue) Config() virtio.QueueConfig {
	return virtio.QueueConfig{Index: q.Index, Size: q.Size, Desc: q.Desc, Driver: q.Avail, Device: q.Used, Kick: q.Kick, Call: q.Call}
}

// WriteDesc writes descriptor i of the queue's table verbatim.
func (q *Queue) WriteDesc(i uint16, addr uint64, length uint32, flags, next uint16) {
	WriteDescAt(q.g, q.Desc, i, addr, length, flags, next)
}

// WriteDescAt writes entry i of a descriptor table at table (also for
// indirect tables).
func WriteDescAt(g *Guest, table uint64, i uint16, addr uint64, length uint32, flags, next uint16) {
	b := g.Bytes(table+16*uint64(i), 16)
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], length)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// Buf is one buffer of a chain: Data is copied in for a device-readable
// buffer; a device-writable one (Write) gets Len zeroed bytes.
type Buf struct {
	Data  []byte
	Len   int
	Write bool
}

// Posted is a chain the driver made available.
type Posted struct {
	Head uint16
	Addr []uint64 // guest-physical address of each buffer
}

// AddChain allocates buffers and descriptors for bufs, links them, and
// makes the chain available (without kicking).
func (q *Queue) AddChain(bufs ...Buf) Posted {
	q.g.t.Helper()
	if len(bufs) > len(q.free) {
		q.g.t.Fatalf("virtiotest: queue %d has %d free descriptors, chain needs %d", q.Index, len(q.free), len(bufs))
	}
	ids := append([]uint16(nil), q.free[:len(bufs)]...)
	q.free = q.free[len(bufs):]
	p := Posted{Head: ids[0]}
	for i, b := range bufs {
		n, flags := uint64(len(b.Data)), uint16(0)
		if b.Write {
			n, flags = uint64(b.Len), Write
		}
		addr := q.g.Alloc(max(n, 1), 8)
		q.g.Write(addr, b.Data)
		var next uint16
		if i+1 < len(bufs) {
			flags |= Next
			next = ids[i+1]
		}
		q.WriteDesc(ids[i], addr, uint32(n), flags, next)
		p.Addr = append(p.Addr, addr)
	}
	q.chains[p.Head] = ids
	q.Post(p.Head)
	return p
}

// Post puts heads in the avail ring and publishes the new avail idx.
func (q *Queue) Post(heads ...uint16) {
	for _, h := range heads {
		b := q.g.Bytes(q.Avail+4+2*uint64(q.availIdx%q.Size), 2)
		binary.LittleEndian.PutUint16(b, h)
		q.availIdx++
	}
	q.g.Store16(q.Avail+2, q.availIdx)
}

// SetAvailIdx publishes an arbitrary avail idx (for hostile-driver tests).
func (q *Queue) SetAvailIdx(v uint16) { q.availIdx = v; q.g.Store16(q.Avail+2, v) }

// SetAvailFlags writes the avail ring flags (VIRTQ_AVAIL_F_NO_INTERRUPT).
func (q *Queue) SetAvailFlags(f uint16) { q.g.Store16(q.Avail, f) }

// SetUsedEvent writes used_event (EVENT_IDX).
func (q *Queue) SetUsedEvent(v uint16) { q.g.Store16(q.Avail+4+2*uint64(q.Size), v) }

// UsedFlags reads the used ring flags (VIRTQ_USED_F_NO_NOTIFY).
func (q *Queue) UsedFlags() uint16 { return q.g.Load16(q.Used) }

// UsedIdx reads the used idx the device published.
func (q *Queue) UsedIdx() uint16 { return q.g.Load16(q.Used + 2) }

// AvailEvent reads avail_event (EVENT_IDX).
func (q *Queue) AvailEvent() uint16 { return q.g.Load16(q.Used + 4 + 8*uint64(q.Size)) }

// KickDevice notifies the device, as the ioeventfd would.
func (q *Queue) KickDevice() {
	q.g.t.Helper()
	if err := q.Kick.Signal(); err != nil {
		q.g.t.Fatal(err)
	}
}

// Interrupted reports (and clears) whether the device signalled Call.
func (q *Queue) Interrupted() bool {
	q.g.t.Helper()
	set, err := q.Call.Clear()
	if err != nil {
		q.g.t.Fatal(err)
	}
	return set
}

// UsedElem is one element of the used ring.
type UsedElem struct {
	ID, Len uint32
}

// NextUsed returns the next used element if the device published one, and
// frees its descriptors.
func (q *Queue) NextUsed() (UsedElem, bool) {
	if q.UsedIdx() == q.lastUsed {
		return UsedElem{}, false
	}
	b := q.g.Bytes(q.Used+4+8*uint64(q.lastUsed%q.Size), 8)
	e := UsedElem{ID: binary.LittleEndian.Uint32(b), Len: binary.LittleEndian.Uint32(b[4:])}
	q.lastUsed++
	if ids, ok := q.chains[uint16(e.ID)]; ok {
		q.free = append(q.free, ids...)
		delete(q.chains, uint16(e.ID))
	}
	return e, true
}

// WaitUsed waits up to timeout for the next used element and fails the test
// without one.
func (q *Queue) WaitUsed(timeout time.Duration) UsedElem {
	q.g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if e, ok := q.NextUsed(); ok {
			return e
		}
		if time.Now().After(deadline) {
			q.g.t.Fatalf("virtiotest: queue %d: no used element within %v (used idx %d)", q.Index, timeout, q.UsedIdx())
		}
		time.Sleep(time.Millisecond)
	}
}
