package queue

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

const (
	featIndirect = 1 << virtio.FeatureIndirectDesc
	featEventIdx = 1 << virtio.FeatureEventIdx
)

func setup(t *testing.T, size uint16, features uint64) (*virtiotest.Guest, *virtiotest.Queue, *Queue) {
	t.Helper()
	g := virtiotest.NewGuest(t, 1<<20)
	d := g.NewQueue(0, size)
	q, err := New(g.Mem, d.Config(), features)
	if err != nil {
		t.Fatal(err)
	}
	return g, d, q
}

func TestNewValidatesSize(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	cfg := g.NewQueue(0, 4).Config()
	for _, size := range []uint16{0, 3, 6, 100, 32769, 65535} {
		cfg.Size = size
		if _, err := New(g.Mem, cfg, 0); !errors.Is(err, ErrSize) {
			t.Errorf("size %d: err = %v, want ErrSize", size, err)
		}
	}
	big := virtiotest.NewGuest(t, 2<<20)
	if _, err := New(big.Mem, big.NewQueue(0, MaxSize).Config(), 0); err != nil {
		t.Errorf("size %d: %v", MaxSize, err)
	}
	one := g.NewQueue(1, 1)
	if _, err := New(g.Mem, one.Config(), 0); err != nil {
		t.Errorf("size 1: %v", err)
	}
}

func TestNewValidatesAlignment(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	base := g.NewQueue(0, 8).Config()
	for name, mod := range map[string]func(*virtio.QueueConfig){
		"desc+8":   func(c *virtio.QueueConfig) { c.Desc += 8 },
		"avail+1":  func(c *virtio.QueueConfig) { c.Driver++ },
		"used+2":   func(c *virtio.QueueConfig) { c.Device += 2 },
		"used+1":   func(c *virtio.QueueConfig) { c.Device++ },
		"desc+1":   func(c *virtio.QueueConfig) { c.Desc++ },
		"avail+3":  func(c *virtio.QueueConfig) { c.Driver += 3 },
		"used+258": func(c *virtio.QueueConfig) { c.Device += 258 },
	} {
		cfg := base
		mod(&cfg)
		if _, err := New(g.Mem, cfg, 0); !errors.Is(err, ErrAlign) {
			t.Errorf("%s: err = %v, want ErrAlign", name, err)
		}
	}
	ok := base
	ok.Driver += 2 // 2-byte alignment is enough for the driver ring
	if _, err := New(g.Mem, ok, 0); err != nil {
		t.Errorf("avail+2: %v", err)
	}
}

func TestNewValidatesRingsInRAM(t *testing.T) {
	g := virtiotest.NewGuest(t, 1<<20)
	base := g.NewQueue(0, 256).Config()
	end := uint64(virtiotest.Base + 1<<20)
	for name, mod := range map[string]func(*virtio.QueueConfig){
		"desc below RAM":     func(c *virtio.QueueConfig) { c.Desc = 0 },
		"desc straddles end": func(c *virtio.QueueConfig) { c.Desc = end - 16*128 },
		"avail straddles":    func(c *virtio.QueueConfig) { c.Driver = end - 8 },
		"used past end":      func(c *virtio.QueueConfig) { c.Device = end },
		"used wraps":         func(c *virtio.QueueConfig) { c.Device = 1<<64 - 1024 },
		"desc wraps":         func(c *virtio.QueueConfig) { c.Desc = 1<<64 - 4096 },
	} {
		cfg := base
		mod(&cfg)
		_, err := New(g.Mem, cfg, 0)
		if !errors.Is(err, ErrRing) || !errors.Is(err, memory.ErrOutOfRange) {
			t.Errorf("%s: err = %v, want ErrRing wrapping memory.ErrOutOfRange", name, err)
		}
	}
}

func TestPopChain(t *testing.T) {
	g, d, q := setup(t, 8, 0)
	var c Chain
	if ok, err := q.Pop(&c); ok || err != nil {
		t.Fatalf("Pop on empty queue = %v, %v", ok, err)
	}
	p := d.AddChain(virtiotest.Buf{Data: []byte("hello")}, virtiotest.Buf{Data: []byte(" world")},
		virtiotest.Buf{Len: 7, Write: true}, virtiotest.Buf{Len: 0, Write: true}, virtiotest.Buf{Len: 3, Write: true})
	ok, err := q.Pop(&c)
	if !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if c.Head != p.Head || c.ReadLen != 11 || c.WriteLen != 10 || len(c.Readable) != 2 || len(c.Writable) != 2 {
		t.Fatalf("chain = head %d read %d/%d write %d/%d", c.Head, c.ReadLen, len(c.Readable), c.WriteLen, len(c.Writable))
	}
	if got := bytes.Join(c.Readable, nil); string(got) != "hello world" {
		t.Errorf("readable = %q", got)
	}
	copy(c.Writable[0], "0123456")
	if got := g.Bytes(p.Addr[2], 7); string(got) != "0123456" {
		t.Errorf("writable segment does not alias guest memory: %q", got)
	}
	if ok, err := q.Pop(&c); ok || err != nil {
		t.Fatalf("second Pop = %v, %v", ok, err)
	}
	if err := q.AddUsed(c.Head, 7); err != nil {
		t.Fatal(err)
	}
	if e, ok := d.NextUsed(); !ok || e.ID != uint32(p.Head) || e.Len != 7 {
		t.Fatalf("used = %+v, %v", e, ok)
	}
}

func TestUndoPop(t *testing.T) {
	_, d, q := setup(t, 4, 0)
	a := d.AddChain(virtiotest.Buf{Len: 4, Write: true})
	b := d.AddChain(virtiotest.Buf{Len: 4, Write: true})
	var c Chain
	q.Pop(&c)
	q.Pop(&c)
	q.UndoPop(2)
	for _, want := range []uint16{a.Head, b.Head} {
		if ok, err := q.Pop(&c); !ok || err != nil || c.Head != want {
			t.Fatalf("Pop after undo = %v, %v, head %d; want %d", ok, err, c.Head, want)
		}
	}
}

func TestUsedRingWrapsAndIndexesWrap(t *testing.T) {
	_, d, q := setup(t, 4, 0)
	// Start both sides just before the 16-bit wrap of the indexes.
	q.lastAvail, q.nextUsed = 65533, 65533
	d.SetAvailIdx(65533)
	var c Chain
	for i := range 10 {
		head := uint16(i % 4)
		d.WriteDesc(head, virtiotest.Base, 1, virtiotest.Write, 0)
		d.Post(head)
		if ok, err := q.Pop(&c); !ok || err != nil || c.Head != head {
			t.Fatalf("round %d: Pop = %v, %v", i, ok, err)
		}
		if err := q.AddUsed(c.Head, uint32(i)); err != nil {
			t.Fatal(err)
		}
		if got := d.UsedIdx(); got != uint16(65534+i) {
			t.Fatalf("round %d: used idx %d", i, got)
		}
	}
}

func TestAvailIndexRunsAhead(t *testing.T) {
	_, d, q := setup(t, 8, 0)
	d.SetAvailIdx(9)
	var c Chain
	_, err := q.Pop(&c)
	if !errors.Is(err, ErrAvailIndex) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrAvailIndex", err)
	}
	if _, err := q.EnableNotify(); !errors.Is(err, ErrAvailIndex) {
		t.Fatalf("EnableNotify err = %v, want ErrAvailIndex", err)
	}
	d.SetAvailIdx(8) // exactly a full ring is fine (heads are garbage-free: all zero)
	for i := range 8 {
		d.WriteDesc(uint16(i), virtiotest.Base, 1, 0, 0)
	}
	if ok, err := q.Pop(&c); !ok || err != nil {
		t.Fatalf("full ring: %v, %v", ok, err)
	}
}

func TestPutUsedRejectsBadHead(t *testing.T) {
	_, _, q := setup(t, 8, 0)
	if err := q.PutUsed(8, 0); !errors.Is(err, ErrUsedID) {
		t.Fatalf("err = %v, want ErrUsedID", err)
	}
}

func TestNeedEvent(t *testing.T) {
	for _, tc := range []struct {
		event, new, old uint16
		want            bool
	}{
		{0, 1, 0, true},
		{1, 1, 0, false},
		{1, 2, 0, true},
		{5, 3, 0, false},
		{5, 6, 0, true},
		{65535, 0, 65535, true},
		{65535, 1, 65534, true},
		{0, 1, 65535, true},
		{2, 1, 65535, false},
		{7, 7, 7, false},
	} {
		if got := NeedEvent(tc.event, tc.new, tc.old); got != tc.want {
			t.Errorf("NeedEvent(%d, %d, %d) = %v, want %v", tc.event, tc.new, tc.old, got, tc.want)
		}
	}
}

func TestNotifyFlags(t *testing.T) {
	_, d, q := setup(t, 8, 0)
	q.DisableNotify()
	if d.UsedFlags()&UsedFNoNotify == 0 {
		t.Fatal("DisableNotify did not set VIRTQ_USED_F_NO_NOTIFY")
	}
	if more, err := q.EnableNotify(); more || err != nil {
		t.Fatalf("EnableNotify on empty queue = %v, %v", more, err)
	}
	if d.UsedFlags() != 0 {
		t.Fatal("EnableNotify did not clear VIRTQ_USED_F_NO_NOTIFY")
	}
	q.DisableNotify()
	d.AddChain(virtiotest.Buf{Len: 1, Write: true}) // posted while notifications were off
	if more, err := q.EnableNotify(); !more || err != nil {
		t.Fatalf("EnableNotify after a post = %v, %v; want true", more, err)
	}

	var c Chain
	q.Pop(&c)
	q.AddUsed(c.Head, 0)
	if !q.NeedsInterrupt() {
		t.Fatal("no interrupt without VIRTQ_AVAIL_F_NO_INTERRUPT")
	}
	d.SetAvailFlags(AvailFNoInterrupt)
	if q.NeedsInterrupt() {
		t.Fatal("interrupt despite VIRTQ_AVAIL_F_NO_INTERRUPT")
	}
}

func TestEventIdx(t *testing.T) {
	_, d, q := setup(t, 8, featEventIdx)
	q.DisableNotify()
	if d.UsedFlags() != 0 {
		t.Fatal("DisableNotify with EVENT_IDX must not use the flags")
	}
	var c Chain
	for range 3 {
		d.AddChain(virtiotest.Buf{Len: 1, Write: true})
	}
	for range 3 {
		if ok, err := q.Pop(&c); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	q.Pop(&c)
	if more, err := q.EnableNotify(); more || err != nil {
		t.Fatalf("EnableNotify = %v, %v", more, err)
	}
	if got := d.AvailEvent(); got != 3 {
		t.Fatalf("avail_event = %d, want 3 (kick me when you publish entry 3)", got)
	}
	// The flags are ignored with EVENT_IDX; used_event decides.
	d.SetAvailFlags(AvailFNoInterrupt)
	d.SetUsedEvent(2) // interrupt when used idx passes 2, i.e. reaches 3
	q.AddUsed(0, 0)
	if !q.NeedsInterrupt() {
		t.Fatal("first interrupt decision must interrupt")
	}
	q.AddUsed(1, 0)
	if q.NeedsInterrupt() {
		t.Fatal("interrupt at used idx 2 with used_event 2")
	}
	q.AddUsed(2, 0)
	if !q.NeedsInterrupt() {
		t.Fatal("no interrupt at used idx 3 with used_event 2")
	}
	if q.NeedsInterrupt() {
		t.Fatal("interrupt with nothing new published")
	}
}

func virtioQueue(size uint16, desc, avail, used uint64) virtio.QueueConfig {
	return virtio.QueueConfig{Size: size, Desc: desc, Driver: avail, Device: used}
}

// BenchmarkPopAddUsed is the per-chain cost of the userspace datapath's ring
// work: pop a two-descriptor chain, return it, decide on the interrupt.
func BenchmarkPopAddUsed(b *testing.B) {
	g := virtiotest.NewGuest(b, 1<<20)
	d := g.NewQueue(0, 256)
	q, err := New(g.Mem, d.Config(), featEventIdx)
	if err != nil {
		b.Fatal(err)
	}
	for i := range uint16(256) {
		d.WriteDesc(i, virtiotest.Base+0x80000, 12, virtiotest.Next, (i+1)%256)
	}
	for i := uint16(1); i < 256; i += 2 {
		d.WriteDesc(i, virtiotest.Base+0x90000, 1500, 0, 0)
	}
	var c Chain
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Post(uint16(i*2) % 256)
		if ok, err := q.Pop(&c); !ok || err != nil {
			b.Fatal(ok, err)
		}
		q.AddUsed(c.Head, 0)
		q.NeedsInterrupt()
	}
}
