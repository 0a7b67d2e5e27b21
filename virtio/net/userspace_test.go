package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

const wait = 5 * time.Second

const (
	v1       = uint64(1) << virtio.FeatureVersion1
	mrg      = uint64(1) << FeatureMrgRxbuf
	eventIdx = uint64(1) << virtio.FeatureEventIdx
	indirect = uint64(1) << virtio.FeatureIndirectDesc
)

type rig struct {
	t      *testing.T
	g      *virtiotest.Guest
	rx, tx *virtiotest.Queue
	tap    *fakeTap
	dev    *Device
	m      *Metrics
	broken chan error
}

// newRig activates a device with the userspace datapath over a fake TAP.
func newRig(t *testing.T, features uint64, size uint16) *rig {
	t.Helper()
	tap := newFakeTap()
	m := new(Metrics)
	dev, err := New(Config{Pairs: []Pair{{NewUserspace(tap, &UserspaceOptions{Metrics: m}), tap}}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	g, rx, tx, a, broken := activation(t, features, size)
	if err := dev.Activate(a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return &rig{t: t, g: g, rx: rx, tx: tx, tap: tap, dev: dev, m: m, broken: broken}
}

func (r *rig) written() []byte {
	r.t.Helper()
	select {
	case f := <-r.tap.written:
		return f
	case <-time.After(wait):
		r.t.Fatal("no frame written to the TAP")
		return nil
	}
}

func header(gso byte) []byte {
	h := make([]byte, HeaderSize)
	h[0], h[1] = 1, gso // NEEDS_CSUM, gso_type
	binary.LittleEndian.PutUint16(h[2:], 54)
	return h
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestUserspaceTX(t *testing.T) {
	for _, features := range []uint64{v1, v1 | eventIdx | indirect} {
		r := newRig(t, features, 16)
		hdr, frame := header(1), pattern(3000, 1)
		// Header alone, then the frame split over two descriptors.
		r.tx.AddChain(virtiotest.Buf{Data: hdr}, virtiotest.Buf{Data: frame[:1000]}, virtiotest.Buf{Data: frame[1000:]})
		r.tx.KickDevice()
		if got := r.written(); !bytes.Equal(got, append(hdr, frame...)) {
			t.Fatalf("TAP got %d bytes, not the header and frame byte-exact", len(got))
		}
		if e := r.tx.WaitUsed(wait); e.Len != 0 {
			t.Fatalf("tx used len %d, want 0", e.Len)
		}
		// Several frames with one kick.
		for i := range 5 {
			r.tx.AddChain(virtiotest.Buf{Data: append(header(0), pattern(60+i, byte(i))...)})
		}
		r.tx.KickDevice()
		for i := range 5 {
			if got := r.written(); !bytes.Equal(got[HeaderSize:], pattern(60+i, byte(i))) {
				t.Fatalf("frame %d out of order or corrupt", i)
			}
			r.tx.WaitUsed(wait)
		}
		if err := r.dev.pairs[0].Backend.Stop(); err != nil {
			t.Fatal(err)
		}
		s := r.m.Snapshot()
		if s.TxPackets != 6 || s.TxBytes != 3000+60+61+62+63+64 || s.Interrupts == 0 {
			t.Fatalf("metrics = %+v", s)
		}
	}
}

func TestUserspaceTXIndirect(t *testing.T) {
	r := newRig(t, v1|indirect, 16)
	hdr, frame := header(0), pattern(200, 3)
	table := r.g.Alloc(32, 16)
	h, f := r.g.Alloc(HeaderSize, 8), r.g.Alloc(200, 8)
	r.g.Write(h, hdr)
	r.g.Write(f, frame)
	virtiotest.WriteDescAt(r.g, table, 0, h, HeaderSize, virtiotest.Next, 1)
	virtiotest.WriteDescAt(r.g, table, 1, f, 200, 0, 0)
	r.tx.WriteDesc(5, table, 32, virtiotest.Indirect, 0)
	r.tx.Post(5)
	r.tx.KickDevice()
	if got := r.written(); !bytes.Equal(got, append(hdr, frame...)) {
		t.Fatal("indirect TX frame not byte-exact")
	}
	if e := r.tx.WaitUsed(wait); e.ID != 5 {
		t.Fatalf("used id %d, want 5", e.ID)
	}
}

// rxFrame is a frame as the TAP delivers it: header, then data.
func rxFrame(n int, seed byte) []byte { return append(header(0), pattern(n, seed)...) }

func TestUserspaceRXMergeable(t *testing.T) {
	r := newRig(t, v1|mrg|eventIdx, 16)
	var posted []virtiotest.Posted
	for range 4 {
		posted = append(posted, r.rx.AddChain(virtiotest.Buf{Len: 1000, Write: true}))
	}
	r.rx.KickDevice()
	frame := rxFrame(2500, 9) // 2512 bytes: three buffers
	r.tap.inject(frame)
	var got []byte
	for i, want := range []uint32{1000, 1000, 512} {
		e := r.rx.WaitUsed(wait)
		if e.ID != uint32(posted[i].Head) || e.Len != want {
			t.Fatalf("used %d = %+v, want head %d len %d", i, e, posted[i].Head, want)
		}
		got = append(got, r.g.Bytes(posted[i].Addr[0], uint64(e.Len))...)
	}
	if n := binary.LittleEndian.Uint16(got[numBuffersOff:]); n != 3 {
		t.Fatalf("num_buffers = %d, want 3", n)
	}
	binary.LittleEndian.PutUint16(frame[numBuffersOff:], 3)
	if !bytes.Equal(got, frame) {
		t.Fatal("frame across merged buffers not byte-exact")
	}
	// A small frame takes the one buffer left, num_buffers 1.
	r.tap.inject(rxFrame(100, 1))
	if e := r.rx.WaitUsed(wait); e.ID != uint32(posted[3].Head) || e.Len != 112 {
		t.Fatalf("small frame used = %+v", e)
	}
	if n := binary.LittleEndian.Uint16(r.g.Bytes(posted[3].Addr[0]+numBuffersOff, 2)); n != 1 {
		t.Fatalf("num_buffers = %d, want 1", n)
	}
}

func TestUserspaceRXWaitsForBuffers(t *testing.T) {
	r := newRig(t, v1|mrg, 16)
	frame := rxFrame(1500, 4)
	r.tap.inject(frame) // no buffers yet
	a := r.rx.AddChain(virtiotest.Buf{Len: 1000, Write: true})
	r.rx.KickDevice()
	time.Sleep(20 * time.Millisecond)
	if r.rx.UsedIdx() != 0 {
		t.Fatal("device used a buffer too small for the frame")
	}
	b := r.rx.AddChain(virtiotest.Buf{Len: 1000, Write: true})
	r.rx.KickDevice()
	e1, e2 := r.rx.WaitUsed(wait), r.rx.WaitUsed(wait)
	if e1.ID != uint32(a.Head) || e1.Len != 1000 || e2.ID != uint32(b.Head) || e2.Len != 512 {
		t.Fatalf("used = %+v %+v", e1, e2)
	}
	if !r.rx.Interrupted() {
		t.Fatal("no interrupt for the received frame")
	}
}

func TestUserspaceRXWithoutMergeable(t *testing.T) {
	r := newRig(t, v1, 16)
	small := r.rx.AddChain(virtiotest.Buf{Len: 8, Write: true}, virtiotest.Buf{Len: 500, Write: true})
	r.rx.KickDevice()
	r.tap.inject(rxFrame(1000, 2)) // does not fit in 508 bytes: dropped
	frame := rxFrame(400, 5)
	r.tap.inject(frame)
	e := r.rx.WaitUsed(wait)
	if e.ID != uint32(small.Head) || e.Len != uint32(len(frame)) {
		t.Fatalf("used = %+v", e)
	}
	got := append(r.g.Bytes(small.Addr[0], 8), r.g.Bytes(small.Addr[1], uint64(len(frame)-8))...)
	binary.LittleEndian.PutUint16(frame[numBuffersOff:], 1)
	if !bytes.Equal(got, frame) {
		t.Fatal("frame not byte-exact (header split across descriptors)")
	}
	if s := r.m.Snapshot(); s.RxDrops != 1 || s.RxPackets != 1 || s.RxBytes != 400 {
		t.Fatalf("metrics = %+v", s)
	}
}

func TestUserspaceEventIdxSuppression(t *testing.T) {
	r := newRig(t, v1|eventIdx, 16)
	r.tx.SetUsedEvent(5) // interrupt once used idx passes 5
	for i := range 7 {
		r.tx.AddChain(virtiotest.Buf{Data: rxFrame(10, byte(i))})
		r.tx.KickDevice()
		r.written()
		r.tx.WaitUsed(wait)
		// The device asks to be kicked for the next buffer only. It
		// writes avail_event after publishing the used entry, so give
		// it until the deadline to do so.
		deadline := time.Now().Add(wait)
		for r.tx.AvailEvent() != uint16(i+1) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := r.tx.AvailEvent(); got != uint16(i+1) {
			t.Fatalf("after %d frames avail_event = %d", i+1, got)
		}
	}
	r.dev.Reset() // the datapath has made all its interrupt decisions
	// used idx 1 (first decision always interrupts) and 6 (crossed 5).
	if n := r.m.Interrupts.Load(); n != 2 {
		t.Fatalf("%d interrupts with EVENT_IDX, want 2", n)
	}
}

func TestUserspaceNoInterruptFlag(t *testing.T) {
	r := newRig(t, v1, 16)
	r.tx.SetAvailFlags(queue.AvailFNoInterrupt)
	for range 3 {
		r.tx.AddChain(virtiotest.Buf{Data: rxFrame(10, 0)})
		r.tx.KickDevice()
		r.written()
		r.tx.WaitUsed(wait)
	}
	r.dev.Reset()
	if n := r.m.Interrupts.Load(); n != 0 || r.tx.Interrupted() {
		t.Fatalf("%d interrupts despite VIRTQ_AVAIL_F_NO_INTERRUPT", n)
	}
}

func (r *rig) wantBroken(what error) {
	r.t.Helper()
	select {
	case err := <-r.broken:
		if !errors.Is(err, queue.ErrMalformed) || !errors.Is(err, what) {
			r.t.Fatalf("Broken(%v), want %v", err, what)
		}
	case <-time.After(wait):
		r.t.Fatal("Broken not called for a malformed chain")
	}
}

func TestUserspaceMalformed(t *testing.T) {
	t.Run("tx buffer outside RAM", func(t *testing.T) {
		r := newRig(t, v1, 16)
		r.tx.WriteDesc(0, 0xdead_0000_0000, 100, 0, 0)
		r.tx.Post(0)
		r.tx.KickDevice()
		r.wantBroken(queue.ErrDescBuffer)
		if r.m.MalformedChains.Load() != 1 {
			t.Fatal("malformed chain not counted")
		}
		// The TX queue stopped; RX still works.
		r.rx.AddChain(virtiotest.Buf{Len: 100, Write: true})
		r.tap.inject(rxFrame(20, 0))
		r.rx.WaitUsed(wait)
	})
	t.Run("tx loop", func(t *testing.T) {
		r := newRig(t, v1, 16)
		r.tx.WriteDesc(0, virtiotest.Base, 10, virtiotest.Next, 1)
		r.tx.WriteDesc(1, virtiotest.Base, 10, virtiotest.Next, 0)
		r.tx.Post(0)
		r.tx.KickDevice()
		r.wantBroken(queue.ErrChainLength)
	})
	t.Run("tx writable", func(t *testing.T) {
		r := newRig(t, v1, 16)
		r.tx.AddChain(virtiotest.Buf{Data: header(0)}, virtiotest.Buf{Len: 10, Write: true})
		r.tx.KickDevice()
		r.wantBroken(ErrDirection)
	})
	t.Run("rx readable", func(t *testing.T) {
		r := newRig(t, v1|mrg, 16)
		r.rx.AddChain(virtiotest.Buf{Data: []byte("x")})
		r.rx.KickDevice()
		r.tap.inject(rxFrame(20, 0))
		r.wantBroken(ErrDirection)
	})
	t.Run("avail idx runs ahead", func(t *testing.T) {
		r := newRig(t, v1, 16)
		r.tx.SetAvailIdx(100)
		r.tx.KickDevice()
		r.wantBroken(queue.ErrAvailIndex)
	})
	t.Run("rx head out of range", func(t *testing.T) {
		r := newRig(t, v1, 16)
		r.rx.Post(16)
		r.rx.KickDevice()
		r.tap.inject(rxFrame(20, 0))
		r.wantBroken(queue.ErrDescIndex)
	})
}

func TestUserspaceResetAndRestart(t *testing.T) {
	tap := newFakeTap()
	m := new(Metrics)
	be := NewUserspace(tap, &UserspaceOptions{Metrics: m})
	dev, err := New(Config{Pairs: []Pair{{be, tap}}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	for round := range 3 {
		_, rx, tx, a, _ := activation(t, v1|mrg|eventIdx, 32)
		if err := dev.Activate(a); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		tx.AddChain(virtiotest.Buf{Data: rxFrame(64, byte(round))})
		tx.KickDevice()
		select {
		case f := <-tap.written:
			if !bytes.Equal(f, rxFrame(64, byte(round))) {
				t.Fatalf("round %d: TX frame corrupt", round)
			}
		case <-time.After(wait):
			t.Fatalf("round %d: no TX frame", round)
		}
		rx.AddChain(virtiotest.Buf{Len: 2048, Write: true})
		rx.KickDevice()
		tap.inject(rxFrame(70, byte(round)))
		if e := rx.WaitUsed(wait); e.Len != 82 {
			t.Fatalf("round %d: rx used %+v", round, e)
		}
		// Stop must return while RX is parked in Read and TX in the kick wait.
		done := make(chan struct{})
		go func() { dev.Reset(); close(done) }()
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatalf("round %d: Reset did not stop the datapath", round)
		}
	}
	// A frame arriving while stopped stays in the TAP for the next session.
	tap.inject(rxFrame(5, 0))
	time.Sleep(10 * time.Millisecond)
	if len(tap.toGuest) != 1 {
		t.Fatal("stopped datapath consumed a TAP frame")
	}
}

func TestUserspaceStopWhileWaitingForBuffers(t *testing.T) {
	r := newRig(t, v1|mrg, 16)
	r.tap.inject(rxFrame(100, 0)) // RX now waits on the kick for buffers
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { r.dev.Reset(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Reset hung while RX waited for buffers")
	}
}
