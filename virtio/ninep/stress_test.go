package ninep

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

// The stress test plays Linux's net/9p/trans_virtio (6.1) against the
// device: many Treads in flight, each a zero-copy chain like
// p9_virtio_zc_request builds (readable: the T-message; writable: an
// 11-byte buffer for size, type, tag and count, then the pinned pages of
// the reader's buffer, the first one from an offset), small reads as one
// writable buffer like p9_virtio_request, Tflush of requests in flight,
// and tags handed out lowest-free first, so a tag comes back as soon as its
// reply is in. Kicks and interrupts follow the device's suppression exactly
// as virtio_ring does (avail_event / NO_NOTIFY, used_event kept at the
// driver's last used index), and the used ring is only read after an
// interrupt: a lost kick, a lost interrupt or a lost completion shows as a
// request that never completes, reported after stuckAfter.

const (
	stuckAfter   = 30 * time.Second
	pageSize     = 4096
	zcHdrLen     = 11 // Rread: size[4] type[1] tag[2] count[4]
	ioHdrSize    = 24 // P9_IOHDRSZ: Linux reads at most msize-24 bytes
	msgTread     = 116
	msgRread     = 117
	msgRflush    = 109
	msgTwalk     = 110
	msgTlopen    = 12
	msgTattach   = 104
	poison       = 0xa5
	readFid      = 1
	maxReadPages = (DefaultMaxMessageSize-ioHdrSize+pageSize-1)/pageSize + 1
)

// stressConfig is one run of the driver.
type stressConfig struct {
	eventIdx  bool
	inflight  int // Treads in flight at most
	flushes   int // Tflush slots
	minRead   int
	maxRead   int // at most msize-24, as Linux reads
	requests  int // Treads to complete
	flushOdds int // one Tread in flushOdds gets a Tflush (0: none)
}

// zcDriver is the guest side.
type zcDriver struct {
	t     *testing.T
	h     *harness
	g     *virtiotest.Guest
	q     *virtiotest.Queue
	cfg   stressConfig
	rng   *rand.Rand
	file  []byte
	msize int

	reads     []readSlot
	freeReads []int
	flushSlot []flushSlot
	freeFlush []int
	tags      [1 << 16]bool
	pending   map[uint16]*pendingReq // by head descriptor

	avail    uint16 // the driver's avail idx
	lastUsed uint16 // next used element to read
	nextOff  int

	posted, completed, flushed, kicks, interrupts int
}

// readSlot is the guest memory of one Tread: the message, the 11-byte
// header buffer, pages for the data and an indirect table.
type readSlot struct {
	msg, hdr, pages, table uint64
}

type flushSlot struct{ msg, reply uint64 }

type pendingReq struct {
	typ     uint8
	head    uint16
	tag     uint16
	slot    int
	posted  time.Time
	off     int
	count   int
	segs    []segment   // writable buffers in order
	flushOf *pendingReq // Tflush: the Tread it flushes
	flushed bool        // Tread: a Tflush names it
	done    bool        // its used element was seen
}

type segment struct {
	addr uint64
	n    int
}

func newZCDriver(t *testing.T, h *harness, cfg stressConfig, file []byte, msize int) *zcDriver {
	d := &zcDriver{
		t: t, h: h, g: h.g, cfg: cfg, file: file, msize: msize,
		rng: rand.New(rand.NewPCG(uint64(cfg.requests), uint64(cfg.maxRead))),
	}
	for range cfg.inflight {
		d.reads = append(d.reads, readSlot{
			msg:   h.g.Alloc(64, 8),
			hdr:   h.g.Alloc(zcHdrLen, 8),
			pages: h.g.Alloc(maxReadPages*pageSize, pageSize),
			table: h.g.Alloc(16*(maxReadPages+2), 16),
		})
	}
	for range cfg.flushes {
		d.flushSlot = append(d.flushSlot, flushSlot{msg: h.g.Alloc(16, 8), reply: h.g.Alloc(rlerrorSize, 8)})
	}
	d.restart()
	return d
}

// restart takes over h.q (after the setup round trips, which went
// through virtiotest's own bookkeeping) with nothing in flight.
func (d *zcDriver) restart() {
	d.q = d.h.q
	d.pending = make(map[uint16]*pendingReq)
	d.tags = [1 << 16]bool{}
	d.freeReads, d.freeFlush = d.freeReads[:0], d.freeFlush[:0]
	for i := range d.reads {
		d.freeReads = append(d.freeReads, i)
	}
	for i := range d.flushSlot {
		d.freeFlush = append(d.freeFlush, i)
	}
	d.avail = d.g.Load16(d.q.Avail + 2)
	d.lastUsed = d.q.UsedIdx()
	d.q.SetUsedEvent(d.lastUsed)
	if _, err := d.q.Call.Clear(); err != nil {
		d.t.Fatal(err)
	}
}

// tag returns the lowest free tag, as idr_alloc does for p9_tag_alloc.
func (d *zcDriver) tag() uint16 {
	for i := range uint16(noTag) {
		if !d.tags[i] {
			d.tags[i] = true
			return i
		}
	}
	d.t.Fatal("out of tags")
	return 0
}

// post makes head available and kicks if the device asked for it, like
// virtqueue_add_sgs followed by virtqueue_kick.
func (d *zcDriver) post(head uint16) {
	old := d.avail
	d.q.Post(head)
	d.avail++
	var kick bool
	if d.cfg.eventIdx {
		kick = queue.NeedEvent(d.q.AvailEvent(), d.avail, old)
	} else {
		kick = d.q.UsedFlags()&queue.UsedFNoNotify == 0
	}
	if kick {
		d.kicks++
		if err := d.q.Kick.Signal(); err != nil {
			d.t.Fatal(err)
		}
	}
}

// postRead posts the next Tread at increasing offsets, wrapping at the end
// of the file (the last read of each pass runs past it).
func (d *zcDriver) postRead() {
	slot := d.freeReads[len(d.freeReads)-1]
	d.freeReads = d.freeReads[:len(d.freeReads)-1]
	s := d.reads[slot]
	count := d.cfg.minRead + d.rng.IntN(d.cfg.maxRead-d.cfg.minRead+1)
	if d.nextOff >= len(d.file) {
		d.nextOff = d.rng.IntN(pageSize)
	}
	off := d.nextOff
	d.nextOff += count
	p := &pendingReq{typ: msgTread, head: uint16(slot), tag: d.tag(), slot: slot, posted: time.Now(), off: off, count: count}
	msg := tmsg(msgTread, p.tag, u32(readFid), u64(uint64(off)), u32(uint32(count)))
	d.g.Write(s.msg, msg)
	var n uint16
	entry := func(addr uint64, length int, flags uint16) {
		virtiotest.WriteDescAt(d.g, s.table, n, addr, uint32(length), flags|virtiotest.Next, n+1)
		n++
	}
	entry(s.msg, len(msg), 0)
	if count <= 1024 {
		// p9_virtio_request: one buffer for the whole reply.
		p.segs = []segment{{s.pages, zcHdrLen + count}}
	} else {
		// p9_virtio_zc_request: the header, then the pages of a buffer that
		// starts anywhere in its first page, in no particular order.
		p.segs = []segment{{s.hdr, zcHdrLen}}
		first := d.rng.IntN(pageSize)
		order := d.rng.Perm(maxReadPages)
		for i, left := 0, count; left > 0; i++ {
			o := 0
			if i == 0 {
				o = first
			}
			k := min(left, pageSize-o)
			p.segs = append(p.segs, segment{s.pages + uint64(order[i])*pageSize + uint64(o), k})
			left -= k
		}
	}
	for _, sg := range p.segs {
		fill(d.g.Bytes(sg.addr, uint64(sg.n)))
		entry(sg.addr, sg.n, virtiotest.Write)
	}
	// The last entry ends the table.
	virtiotest.WriteDescAt(d.g, s.table, n-1, p.segs[len(p.segs)-1].addr, uint32(p.segs[len(p.segs)-1].n), virtiotest.Write, 0)
	d.q.WriteDesc(p.head, s.table, uint32(16*n), virtiotest.Indirect, 0)
	d.pending[p.head] = p
	d.posted++
	d.post(p.head)
	if d.cfg.flushOdds > 0 && len(d.freeFlush) > 0 && d.rng.IntN(d.cfg.flushOdds) == 0 {
		d.postFlush(p)
	}
}

// postFlush posts a Tflush of r in a direct two-descriptor chain, as
// p9_client_flush would after a fatal signal.
func (d *zcDriver) postFlush(r *pendingReq) {
	slot := d.freeFlush[len(d.freeFlush)-1]
	d.freeFlush = d.freeFlush[:len(d.freeFlush)-1]
	s := d.flushSlot[slot]
	head := uint16(d.cfg.inflight + 2*slot)
	p := &pendingReq{typ: msgTflush, head: head, tag: d.tag(), slot: slot, posted: time.Now(), flushOf: r,
		segs: []segment{{s.reply, rlerrorSize}}}
	r.flushed = true
	msg := tmsg(msgTflush, p.tag, u16(r.tag))
	d.g.Write(s.msg, msg)
	fill(d.g.Bytes(s.reply, rlerrorSize))
	d.q.WriteDesc(head, s.msg, uint32(len(msg)), virtiotest.Next, head+1)
	d.q.WriteDesc(head+1, s.reply, rlerrorSize, virtiotest.Write, 0)
	d.pending[head] = p
	d.flushed++
	d.post(head)
}

// interrupted waits up to wait for the device's interrupt.
func (d *zcDriver) interrupted(wait time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(d.q.Call.Fd()), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, int(wait.Milliseconds())); err != nil && err != unix.EINTR {
		d.t.Fatal(err)
	}
	set, err := d.q.Call.Clear()
	if err != nil {
		d.t.Fatal(err)
	}
	return set
}

// reap reads every used element, like req_done, keeping used_event at the
// last one seen as virtqueue_get_buf does.
func (d *zcDriver) reap() {
	for d.q.UsedIdx() != d.lastUsed {
		e, ok := d.q.NextUsed()
		if !ok {
			d.t.Fatal("used idx moved but no element")
		}
		d.lastUsed++
		if d.cfg.eventIdx {
			d.q.SetUsedEvent(d.lastUsed)
		}
		d.complete(e)
	}
}

func (d *zcDriver) complete(e virtiotest.UsedElem) {
	p, ok := d.pending[uint16(e.ID)]
	if !ok {
		d.t.Fatalf("used element for head %d (len %d), which the driver did not post or already got back", e.ID, e.Len)
	}
	delete(d.pending, p.head)
	p.done = true
	reply := d.gatherReply(p, int(min(e.Len, 1<<20)))
	switch p.typ {
	case msgTread:
		d.checkRead(p, e, reply)
		d.freeReads = append(d.freeReads, p.slot)
		d.completed++
	case msgTflush:
		if e.Len != hdrSize || reply[4] != msgRflush || binary.LittleEndian.Uint16(reply[5:]) != p.tag {
			d.t.Fatalf("Tflush tag %d: used len %d, reply % x; want a 7-byte Rflush with its tag", p.tag, e.Len, reply[:min(len(reply), 11)])
		}
		if r := p.flushOf; !r.done {
			// 9P: a reply after the Rflush means the request was
			// cancelled; the server never cancels.
			d.t.Fatalf("Rflush (tag %d) used before the reply of the Tread it flushes (tag %d, head %d)", p.tag, r.tag, r.head)
		}
		d.freeFlush = append(d.freeFlush, p.slot)
	}
	d.tags[p.tag] = false
}

// gatherReply reads n bytes of p's writable buffers.
func (d *zcDriver) gatherReply(p *pendingReq, n int) []byte {
	out := make([]byte, 0, n)
	for _, sg := range p.segs {
		if len(out) == n {
			break
		}
		out = append(out, d.g.Bytes(sg.addr, uint64(min(sg.n, n-len(out))))...)
	}
	return out
}

func (d *zcDriver) checkRead(p *pendingReq, e virtiotest.UsedElem, reply []byte) {
	want := max(0, min(p.count, len(d.file)-p.off))
	what := fmt.Sprintf("Tread tag %d (head %d, offset %d, count %d, flushed %v)", p.tag, p.head, p.off, p.count, p.flushed)
	if int(e.Len) != zcHdrLen+want || len(reply) < zcHdrLen {
		d.t.Fatalf("%s: used len %d, want %d; reply starts % x", what, e.Len, zcHdrLen+want, reply[:min(len(reply), 16)])
	}
	size := binary.LittleEndian.Uint32(reply)
	tag := binary.LittleEndian.Uint16(reply[5:])
	got := binary.LittleEndian.Uint32(reply[7:])
	if reply[4] != msgRread || tag != p.tag || size != e.Len || int(got) != want {
		d.t.Fatalf("%s: reply size %d type %d tag %d count %d; want Rread of %d with count %d", what, size, reply[4], tag, got, e.Len, want)
	}
	if !bytes.Equal(reply[zcHdrLen:], d.file[p.off:p.off+want]) {
		i := 0
		for i < want && reply[zcHdrLen+i] == d.file[p.off+i] {
			i++
		}
		d.t.Fatalf("%s: data differs from the file at byte %d of %d", what, i, want)
	}
	// Nothing written past the reply.
	if rest := d.gatherReply(p, zcHdrLen+p.count); len(rest) > zcHdrLen+want && rest[zcHdrLen+want] != poison {
		d.t.Fatalf("%s: byte after the reply overwritten", what)
	}
}

// stuck fails on a request older than stuckAfter, saying what the rings show.
func (d *zcDriver) stuck() {
	now := time.Now()
	for _, p := range d.pending {
		if age := now.Sub(p.posted); age > stuckAfter {
			d.t.Fatalf("request tag %d (type %d, head %d, offset %d) never completed after %v: avail idx %d, avail_event %d, used idx %d, driver at %d, used flags %#x; %d posted, %d completed, %d in flight, %d kicks, %d interrupts",
				p.tag, p.typ, p.head, p.off, age.Round(time.Second), d.avail, d.q.AvailEvent(), d.q.UsedIdx(), d.lastUsed,
				d.q.UsedFlags(), d.posted, d.completed, len(d.pending), d.kicks, d.interrupts)
		}
	}
}

func (d *zcDriver) run() {
	for d.completed < d.cfg.requests {
		for len(d.freeReads) > 0 && d.posted < d.cfg.requests {
			d.postRead()
		}
		if d.interrupted(100 * time.Millisecond) {
			d.interrupts++
			d.reap()
		}
		select {
		case err := <-d.h.broken:
			d.t.Fatalf("device marked broken: %v", err)
		default:
		}
		d.stuck()
	}
	for len(d.pending) > 0 {
		if d.interrupted(100 * time.Millisecond) {
			d.interrupts++
			d.reap()
		}
		d.stuck()
	}
}

// setupRead negotiates msize and opens name as readFid, through
// virtiotest's own chains.
func setupRead(t *testing.T, h *harness, msize int, name string) {
	t.Helper()
	r := h.roundTrip(tmsg(msgTversion, noTag, u32(uint32(msize)), str("9P2000.L")), 64)
	if r[4] != msgTversion+1 || binary.LittleEndian.Uint32(r[7:]) != uint32(msize) {
		t.Fatalf("Rversion % x", r)
	}
	for _, m := range [][]byte{
		tmsg(msgTattach, 0, u32(0), u32(^uint32(0)), str(""), str(""), u32(0)),
		tmsg(msgTwalk, 0, u32(0), u32(readFid), u16(1), str(name)),
		tmsg(msgTlopen, 0, u32(readFid), u32(0)),
	} {
		if r := h.roundTrip(m, 4096); r[4] != m[4]+1 {
			t.Fatalf("T-message type %d: reply % x", m[4], r[:min(len(r), 16)])
		}
	}
}

// TestStressZeroCopyReads drives the device like Linux reading a large
// file through the share: see the top of this file.
func TestStressZeroCopyReads(t *testing.T) {
	size, requests := 64<<20, 1200
	if testing.Short() {
		size, requests = 8<<20, 200
	}
	dir := t.TempDir()
	file := make([]byte, size)
	rand.NewChaCha8([32]byte{9}).Read(file) //nolint:errcheck // never fails
	if err := os.WriteFile(filepath.Join(dir, "big"), file, 0o444); err != nil {
		t.Fatal(err)
	}
	msize := DefaultMaxMessageSize
	for _, tc := range []struct {
		name string
		cfg  stressConfig
	}{
		{"event-idx/large", stressConfig{eventIdx: true, inflight: 64, flushes: 32, minRead: 128 << 10, maxRead: msize - ioHdrSize, requests: requests, flushOdds: 16}},
		{"no-event-idx/large", stressConfig{eventIdx: false, inflight: 64, flushes: 32, minRead: 128 << 10, maxRead: msize - ioHdrSize, requests: requests, flushOdds: 16}},
		{"event-idx/small", stressConfig{eventIdx: true, inflight: 64, flushes: 32, minRead: 1, maxRead: 8 << 10, requests: 4 * requests, flushOdds: 8}},
		{"no-event-idx/small", stressConfig{eventIdx: false, inflight: 64, flushes: 32, minRead: 1, maxRead: 8 << 10, requests: 4 * requests, flushOdds: 8}},
		// One Tread at a time, each flushed: the server's Tflush handler
		// often answered before the Tread's reply was sent.
		{"flush-each", stressConfig{eventIdx: true, inflight: 1, flushes: 1, minRead: 1, maxRead: 4 << 10, requests: 300, flushOdds: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			features := uint64(0)
			if !tc.cfg.eventIdx {
				features = (&Device{}).Features() &^ (1 << virtio.FeatureEventIdx)
			}
			h := newHarnessFeatures(t, dir, 128, 40<<20, features)
			setupRead(t, h, msize, "big")
			d := newZCDriver(t, h, tc.cfg, file, msize)
			start := time.Now()
			d.run()
			t.Logf("%d Treads (%d flushed), %d kicks, %d interrupts in %v",
				d.completed, d.flushed, d.kicks, d.interrupts, time.Since(start).Round(time.Millisecond))
			h.notBroken()
		})
	}
}

var poisonPage = bytes.Repeat([]byte{poison}, pageSize)

// fill poisons b, so bytes the device did not write stand out.
func fill(b []byte) {
	for len(b) > 0 {
		b = b[copy(b, poisonPage):]
	}
}
