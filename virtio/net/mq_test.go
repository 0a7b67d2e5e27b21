package net

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

const ackedMQ = v1 | ControlFeatures

// mqRig is a device with n pairs of fake backends and TAPs.
type mqRig struct {
	t    *testing.T
	d    *Device
	taps []*fakeTap
	bes  []*fakeBackend
}

func newMQRig(t *testing.T, n int) *mqRig {
	t.Helper()
	r := &mqRig{t: t}
	var pairs []Pair
	for range n {
		tap, be := newFakeTap(), &fakeBackend{features: RingFeatures}
		r.taps, r.bes = append(r.taps, tap), append(r.bes, be)
		pairs = append(pairs, Pair{be, tap})
	}
	d, err := New(Config{Pairs: pairs})
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	return r
}

// wantAttached checks which TAP queues are attached: those of pairs below n.
func (r *mqRig) wantAttached(n int) {
	r.t.Helper()
	for i, tap := range r.taps {
		if tap.attached() != (i < n) {
			r.t.Fatalf("TAP queue of pair %d attached=%v, want pairs 0..%d attached", i, tap.attached(), n-1)
		}
	}
	if len(r.taps[0].queueOps) != 0 {
		r.t.Fatalf("pair 0's TAP queue was attached or detached: %v", r.taps[0].queueOps)
	}
}

// wantStarted checks which backends are running.
func (r *mqRig) wantStarted(pairs ...int) {
	r.t.Helper()
	for i, be := range r.bes {
		be.mu.Lock()
		running := len(be.started) > be.stops
		be.mu.Unlock()
		if running != slices.Contains(pairs, i) {
			r.t.Fatalf("backend of pair %d running=%v, want running %v", i, running, pairs)
		}
	}
}

// mqGuest is a test guest with queues at the given indexes.
type mqGuest struct {
	g      *virtiotest.Guest
	q      map[uint16]*virtiotest.Queue
	a      virtio.Activation
	broken chan error
}

func newMQGuest(t *testing.T, features uint64, size uint16, indexes ...uint16) *mqGuest {
	mg := &mqGuest{g: virtiotest.NewGuest(t, 8<<20), q: make(map[uint16]*virtiotest.Queue), broken: make(chan error, 4)}
	mg.a = virtio.Activation{Features: features, Memory: mg.g.Mem, Broken: func(err error) { mg.broken <- err }}
	for _, i := range indexes {
		sz := size
		if i == 8 && size > ctrlQueueSize { // the control queue of a 4-pair device
			sz = ctrlQueueSize
		}
		q := mg.g.NewQueue(i, sz)
		mg.q[i] = q
		mg.a.Queues = append(mg.a.Queues, q.Config())
	}
	return mg
}

// allQueues are the queue indexes of a 4-pair device with its control queue.
var allQueues = []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8}

// ctrl sends a command (class, command, data) on queue ctrl and returns
// the ack byte.
func (mg *mqGuest) ctrl(t *testing.T, ctrl uint16, cmd ...byte) byte {
	t.Helper()
	q := mg.q[ctrl]
	p := q.AddChain(virtiotest.Buf{Data: cmd}, virtiotest.Buf{Len: 1, Write: true})
	q.KickDevice()
	e := q.WaitUsed(2 * time.Second)
	if e.ID != uint32(p.Head) || e.Len != 1 {
		t.Fatalf("control command % x: used element %+v, want head %d length 1", cmd, e, p.Head)
	}
	return mg.g.Bytes(p.Addr[1], 1)[0]
}

func pairsSet(n uint16) []byte {
	return binary.LittleEndian.AppendUint16([]byte{ctrlMQ, ctrlMQVQPairsSet}, n)
}

func TestMultiqueueOffer(t *testing.T) {
	r := newMQRig(t, 4)
	if got := r.d.Features(); got != DeviceFeatures|RingFeatures|ControlFeatures {
		t.Errorf("4 pairs: offered %#x, want the control features too", got)
	}
	if got, want := r.d.QueueMaxSizes(), []uint16{256, 256, 256, 256, 256, 256, 256, 256, ctrlQueueSize}; !slices.Equal(got, want) {
		t.Errorf("QueueMaxSizes %v, want %v", got, want)
	}
	cfg := make([]byte, 2)
	r.d.ReadConfig(configMaxPairs, cfg)
	if binary.LittleEndian.Uint16(cfg) != 4 {
		t.Errorf("max_virtqueue_pairs % x, want 4", cfg)
	}
	// New leaves the TAP as a reset does: only pair 0's queue attached.
	r.wantAttached(1)
	if r.d.ActivePairs() != 0 {
		t.Errorf("ActivePairs %d before activation", r.d.ActivePairs())
	}

	one := newMQRig(t, 1)
	if got := one.d.Features(); got&ControlFeatures != 0 {
		t.Errorf("1 pair: control features offered (%#x)", got)
	}
	if got := one.d.QueueMaxSizes(); len(got) != 2 {
		t.Errorf("1 pair: %d queues", len(got))
	}

	tiny, err := New(Config{Pairs: newMQRig(t, 2).d.pairs, QueueSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	if got := tiny.QueueMaxSizes(); !slices.Equal(got, []uint16{16, 16, 16, 16, 16}) {
		t.Errorf("queue size 16: QueueMaxSizes %v", got)
	}

	tap := newFakeTap()
	tap.failQueueOps(errors.New("no TUNSETQUEUE"))
	if _, err := New(Config{Pairs: []Pair{{&fakeBackend{features: RingFeatures}, newFakeTap()}, {&fakeBackend{features: RingFeatures}, tap}}}); err == nil {
		t.Error("New succeeded although the TAP queue of pair 1 could not be detached")
	}
}

func TestActivateMultiqueue(t *testing.T) {
	r := newMQRig(t, 4)
	mg := newMQGuest(t, ackedMQ, 256, allQueues...)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	r.wantStarted(0, 1, 2, 3)
	for i, be := range r.bes {
		p := be.started[0]
		if p.RX.Index != uint16(2*i) || p.TX.Index != uint16(2*i+1) || p.RX.Desc != mg.q[uint16(2*i)].Desc {
			t.Fatalf("pair %d got queues %d and %d", i, p.RX.Index, p.TX.Index)
		}
		if off, ok := r.taps[i].lastOffload(); !ok || off != 0 {
			t.Fatalf("pair %d: TAP offload %#x %v", i, off, ok)
		}
	}
	// Until VQ_PAIRS_SET the driver uses pair 0 only.
	r.wantAttached(1)
	if r.d.ActivePairs() != 1 || r.d.Metrics().ActivePairs.Load() != 1 {
		t.Fatalf("ActivePairs %d, metric %d, want 1", r.d.ActivePairs(), r.d.Metrics().ActivePairs.Load())
	}
	for _, step := range []struct {
		n    uint16
		ack  byte
		want int // pairs in use afterwards
	}{
		{3, ctrlAckOK, 3},
		{4, ctrlAckOK, 4},
		{2, ctrlAckOK, 2},
		{5, ctrlAckErr, 2},
		{0, ctrlAckErr, 2},
		{1, ctrlAckOK, 1},
		{4, ctrlAckOK, 4},
	} {
		if ack := mg.ctrl(t, 8, pairsSet(step.n)...); ack != step.ack {
			t.Fatalf("VQ_PAIRS_SET %d: ack %d, want %d", step.n, ack, step.ack)
		}
		if r.d.ActivePairs() != step.want || r.d.Metrics().ActivePairs.Load() != uint64(step.want) {
			t.Fatalf("after VQ_PAIRS_SET %d: %d pairs in use, want %d", step.n, r.d.ActivePairs(), step.want)
		}
		r.wantAttached(step.want)
		r.wantStarted(0, 1, 2, 3) // backends keep running; only the TAP follows
	}
	if s := r.d.Metrics().ControlSnapshot(); s.CtrlOK[CtrlClassMQ] != 5 || s.CtrlErr[CtrlClassMQ] != 2 {
		t.Fatalf("control counters %+v", s)
	}

	r.d.Reset()
	r.wantStarted()
	r.wantAttached(1)
	if r.d.ActivePairs() != 0 || r.d.Metrics().ActivePairs.Load() != 0 {
		t.Fatalf("after Reset: %d pairs in use", r.d.ActivePairs())
	}
	for i, be := range r.bes {
		if be.stops != 1 {
			t.Fatalf("Reset stopped backend %d %d times", i, be.stops)
		}
	}
	// The next activation starts over with pair 0.
	mg = newMQGuest(t, ackedMQ, 256, allQueues...)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	r.wantAttached(1)
	if ack := mg.ctrl(t, 8, pairsSet(2)...); ack != ctrlAckOK {
		t.Fatalf("VQ_PAIRS_SET 2 after reset: ack %d", ack)
	}
	r.wantAttached(2)
	if err := r.d.Close(); err != nil {
		t.Fatal(err)
	}
	r.wantAttached(1)
}

// TestActivateFewerPairs: the driver may enable fewer queues than offered;
// VQ_PAIRS_SET cannot go beyond the pairs it enabled.
func TestActivateFewerPairs(t *testing.T) {
	r := newMQRig(t, 4)
	mg := newMQGuest(t, ackedMQ, 256, 0, 1, 2, 3, 8)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	r.wantStarted(0, 1)
	for _, tap := range r.taps[2:] {
		if _, ok := tap.lastOffload(); ok {
			t.Fatal("offloads set on the TAP of a pair the driver did not enable")
		}
	}
	if ack := mg.ctrl(t, 8, pairsSet(3)...); ack != ctrlAckErr {
		t.Fatalf("VQ_PAIRS_SET 3 with 2 pairs enabled: ack %d", ack)
	}
	r.wantAttached(1)
	if ack := mg.ctrl(t, 8, pairsSet(2)...); ack != ctrlAckOK {
		t.Fatalf("VQ_PAIRS_SET 2: ack %d", ack)
	}
	r.wantAttached(2)
	r.d.Reset()

	// A gap: pairs 0 and 2 enabled, not 1.
	mg = newMQGuest(t, ackedMQ, 256, 0, 1, 4, 5, 8)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	if ack := mg.ctrl(t, 8, pairsSet(3)...); ack != ctrlAckErr {
		t.Fatalf("VQ_PAIRS_SET 3 with pair 1 not enabled: ack %d", ack)
	}
	r.wantAttached(1)
	r.d.Reset()
}

// TestActivateControlWithoutMQ: with CTRL_VQ but not MQ the control queue
// is queue 2 and only pair 0 exists for the driver (virtio 1.2 §5.1.2).
func TestActivateControlWithoutMQ(t *testing.T) {
	r := newMQRig(t, 4)
	acked := v1 | 1<<FeatureCtrlVQ | 1<<FeatureCtrlRX
	// Queue 3 (tx1 under MQ) is enabled too: unused, not served.
	mg := newMQGuest(t, acked, 256, 0, 1, 2, 3)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	r.wantStarted(0)
	r.wantAttached(1)
	if ack := mg.ctrl(t, 2, ctrlRX, ctrlRXPromisc, 1); ack != ctrlAckOK {
		t.Fatalf("PROMISC on queue 2: ack %d", ack)
	}
	if !r.d.RXMode().Promisc {
		t.Fatal("promiscuous mode not recorded")
	}
	if ack := mg.ctrl(t, 2, pairsSet(1)...); ack != ctrlAckErr {
		t.Fatalf("VQ_PAIRS_SET without MQ: ack %d", ack)
	}
	r.wantAttached(1)
	r.d.Reset()
	if r.d.RXMode().Promisc {
		t.Fatal("promiscuous mode survived a reset")
	}
}

func TestActivateWithoutControl(t *testing.T) {
	r := newMQRig(t, 4)
	mg := newMQGuest(t, v1, 256, 0, 1)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	r.wantStarted(0)
	r.wantAttached(1)
	if r.d.ctrl != nil {
		t.Fatal("control queue served without CTRL_VQ")
	}
	if r.d.ActivePairs() != 1 {
		t.Fatalf("ActivePairs %d", r.d.ActivePairs())
	}
	r.d.Reset()
}

func TestActivateRejectsMultiqueue(t *testing.T) {
	r := newMQRig(t, 4)
	for _, tc := range []struct {
		name     string
		features uint64
		indexes  []uint16
		mod      func(*virtio.Activation)
	}{
		{"MQ without CTRL_VQ", v1 | 1<<FeatureMQ, []uint16{0, 1}, nil},
		{"CTRL_RX without CTRL_VQ", v1 | 1<<FeatureCtrlRX, []uint16{0, 1}, nil},
		{"half a pair", ackedMQ, []uint16{0, 1, 2, 8}, nil},
		{"no pair 0", ackedMQ, []uint16{2, 3, 8}, nil},
		{"pair 0 without tx", v1, []uint16{0}, nil},
		{"control queue too big", ackedMQ, allQueues, func(a *virtio.Activation) { a.Queues[8].Size = 128 }},
		{"queue beyond the device", ackedMQ, allQueues, func(a *virtio.Activation) { a.Queues[8].Index = 9 }},
		{"out of order", ackedMQ, allQueues, func(a *virtio.Activation) { a.Queues[3], a.Queues[4] = a.Queues[4], a.Queues[3] }},
		{"duplicate", ackedMQ, allQueues, func(a *virtio.Activation) { a.Queues = append(a.Queues, a.Queues[8]) }},
		{"no call", ackedMQ, allQueues, func(a *virtio.Activation) { a.Queues[8].Call = nil }},
	} {
		mg := newMQGuest(t, tc.features, 256, tc.indexes...)
		if tc.mod != nil {
			tc.mod(&mg.a)
		}
		if err := r.d.Activate(mg.a); err == nil {
			t.Errorf("%s: Activate accepted", tc.name)
			r.d.Reset()
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	r.wantStarted()
	r.wantAttached(1)
	for i, tap := range r.taps {
		if _, ok := tap.lastOffload(); ok {
			t.Fatalf("a rejected activation set TAP offloads on pair %d", i)
		}
	}
	// A backend failing to start leaves nothing running.
	r.bes[2].startErr = errors.New("no")
	mg := newMQGuest(t, ackedMQ, 256, allQueues...)
	if err := r.d.Activate(mg.a); err == nil {
		t.Fatal("Activate succeeded with a failing backend")
	}
	r.wantStarted()
	r.wantAttached(1)
	if r.d.ActivePairs() != 0 {
		t.Fatalf("ActivePairs %d after a failed activation", r.d.ActivePairs())
	}
	r.bes[2].startErr = nil
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatalf("Activate after a failed one: %v", err)
	}
	r.wantStarted(0, 1, 2, 3)
	r.d.Reset()
}

// TestPairsSetTapFailure: when the TAP refuses to attach a queue the driver
// gets VIRTIO_NET_ERR and the pairs in use stay as they were.
func TestPairsSetTapFailure(t *testing.T) {
	r := newMQRig(t, 4)
	mg := newMQGuest(t, ackedMQ, 256, allQueues...)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	defer r.d.Reset()
	if ack := mg.ctrl(t, 8, pairsSet(2)...); ack != ctrlAckOK {
		t.Fatalf("VQ_PAIRS_SET 2: ack %d", ack)
	}
	r.taps[3].failQueueOps(errors.New("TUNSETQUEUE: no"))
	if ack := mg.ctrl(t, 8, pairsSet(4)...); ack != ctrlAckErr {
		t.Fatalf("VQ_PAIRS_SET 4 with a failing TAP queue: ack %d", ack)
	}
	if r.d.ActivePairs() != 2 {
		t.Fatalf("ActivePairs %d after a failed switch, want 2", r.d.ActivePairs())
	}
	r.taps[3].failQueueOps(nil)
	r.wantAttached(2) // pair 2's queue, attached on the way, was detached again
}

// TestControlQueueMalformed: a command without a writable ack byte cannot
// be answered: the device needs a reset. Commands spread over several
// buffers, with a larger writable part or too long are answered.
func TestControlQueueMalformed(t *testing.T) {
	r := newMQRig(t, 4)
	mg := newMQGuest(t, ackedMQ, 256, allQueues...)
	if err := r.d.Activate(mg.a); err != nil {
		t.Fatal(err)
	}
	defer r.d.Reset()
	q := mg.q[8]

	// Split over three readable buffers, four writable bytes.
	p := q.AddChain(virtiotest.Buf{Data: []byte{ctrlMQ}}, virtiotest.Buf{Data: []byte{ctrlMQVQPairsSet, 3}},
		virtiotest.Buf{Data: []byte{0}}, virtiotest.Buf{Len: 4, Write: true})
	q.KickDevice()
	if e := q.WaitUsed(2 * time.Second); e.Len != 1 || mg.g.Bytes(p.Addr[3], 1)[0] != ctrlAckOK {
		t.Fatalf("split command: used %+v, ack %d", e, mg.g.Bytes(p.Addr[3], 1)[0])
	}
	r.wantAttached(3)

	// Well formed but longer than hlsvmm reads (a MAC table of 11000
	// addresses): refused unread.
	big := cmd(ctrlMAC, ctrlMACTableSet, macTables(11000, 0)...)
	if len(big) <= maxCtrlCommandSize {
		t.Fatalf("test command of %d bytes is not oversized", len(big))
	}
	p = q.AddChain(virtiotest.Buf{Data: big}, virtiotest.Buf{Len: 1, Write: true})
	q.KickDevice()
	if e := q.WaitUsed(2 * time.Second); e.Len != 1 || mg.g.Bytes(p.Addr[1], 1)[0] != ctrlAckErr {
		t.Fatalf("oversized command: used %+v, ack %d", e, mg.g.Bytes(p.Addr[1], 1)[0])
	}
	if s := r.d.Metrics().ControlSnapshot(); s.CtrlErr[CtrlClassMAC] != 1 || r.d.RXMode().Unicast != 0 {
		t.Fatalf("oversized MAC command: counters %+v, RX mode %+v", s, r.d.RXMode())
	}

	// No ack byte.
	q.AddChain(virtiotest.Buf{Data: pairsSet(1)})
	q.KickDevice()
	select {
	case err := <-mg.broken:
		t.Logf("broken: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("a command without an ack byte did not mark the device broken")
	}
	if r.d.Metrics().MalformedChains.Load() != 1 {
		t.Fatalf("malformed chains %d", r.d.Metrics().MalformedChains.Load())
	}
	r.wantAttached(3) // the command was not carried out
	if q.UsedIdx() != 2 {
		t.Fatalf("used idx %d: the unanswerable command was returned", q.UsedIdx())
	}
}
