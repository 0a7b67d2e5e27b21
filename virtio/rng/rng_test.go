package rng

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

const wait = 5 * time.Second

const v1 = uint64(1) << virtio.FeatureVersion1

type rig struct {
	t      *testing.T
	g      *virtiotest.Guest
	q      *virtiotest.Queue
	dev    *Device
	a      virtio.Activation
	broken chan error
}

func newRig(t *testing.T, features uint64) *rig {
	t.Helper()
	r := &rig{t: t, g: virtiotest.NewGuest(t, 4<<20), dev: New(), broken: make(chan error, 4)}
	t.Cleanup(r.dev.Reset)
	r.activate(features)
	return r
}

func (r *rig) activate(features uint64) {
	r.t.Helper()
	r.q = r.g.NewQueue(0, 16)
	r.a = virtio.Activation{Features: features, Memory: r.g.Mem, Queues: []virtio.QueueConfig{r.q.Config()},
		Broken: func(err error) { r.broken <- err }}
	if err := r.dev.Activate(r.a); err != nil {
		r.t.Fatal(err)
	}
}

// entropy posts writable buffers of the given sizes as one chain and
// returns the used length and the bytes the device wrote.
func (r *rig) entropy(sizes ...int) (uint32, [][]byte) {
	r.t.Helper()
	bufs := make([]virtiotest.Buf, len(sizes))
	for i, n := range sizes {
		bufs[i] = virtiotest.Buf{Len: n, Write: true}
	}
	p := r.q.AddChain(bufs...)
	r.q.KickDevice()
	e := r.q.WaitUsed(wait)
	if e.ID != uint32(p.Head) {
		r.t.Fatalf("used id %d, head %d", e.ID, p.Head)
	}
	out := make([][]byte, len(sizes))
	for i, n := range sizes {
		out[i] = append([]byte(nil), r.g.Bytes(p.Addr[i], uint64(n))...)
	}
	return e.Len, out
}

// looksRandom rejects constant and obviously patterned buffers: at least
// 200 distinct byte values in 4 KiB of getrandom output is all but certain.
func looksRandom(t *testing.T, b []byte) {
	t.Helper()
	var seen [256]bool
	distinct := 0
	for _, c := range b {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
	}
	if distinct < 200 {
		t.Fatalf("%d bytes with only %d distinct values", len(b), distinct)
	}
}

func TestFill(t *testing.T) {
	for _, f := range []uint64{v1, v1 | RingFeatures} {
		r := newRig(t, f)
		n, got := r.entropy(4096)
		if n != 4096 {
			t.Fatalf("used len %d", n)
		}
		looksRandom(t, got[0])
		// Two buffers in one chain, then another chain: all different.
		n, got2 := r.entropy(3000, 1096)
		if n != 4096 {
			t.Fatalf("used len %d", n)
		}
		both := append(got2[0], got2[1]...)
		looksRandom(t, both)
		if bytes.Equal(both, got[0]) {
			t.Fatal("same bytes twice")
		}
		m := r.dev.Metrics()
		if m.Requests.Load() != 2 || m.Bytes.Load() != 8192 || m.Interrupts.Load() == 0 {
			t.Fatalf("metrics: %d requests, %d bytes, %d interrupts", m.Requests.Load(), m.Bytes.Load(), m.Interrupts.Load())
		}
	}
}

func TestCap(t *testing.T) {
	r := newRig(t, v1)
	n, got := r.entropy(MaxRequest + 4096)
	if n != MaxRequest {
		t.Fatalf("used len %d, want the cap %d", n, MaxRequest)
	}
	if !bytes.Equal(got[0][MaxRequest:], make([]byte, 4096)) {
		t.Fatal("wrote past the reported length")
	}
	looksRandom(t, got[0][MaxRequest-4096:MaxRequest])
}

func TestGarbage(t *testing.T) {
	for _, c := range []struct {
		name string
		post func(r *rig)
		want error
	}{
		{"readable buffer", func(r *rig) { r.q.AddChain(virtiotest.Buf{Data: make([]byte, 64)}) }, ErrDirection},
		{"buffer outside RAM", func(r *rig) { r.q.WriteDesc(0, 1<<40, 64, virtiotest.Write, 0); r.q.Post(0) }, queue.ErrDescBuffer},
		{"avail index runs ahead", func(r *rig) { r.q.SetAvailIdx(500) }, queue.ErrAvailIndex},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, v1)
			c.post(r)
			r.q.KickDevice()
			select {
			case err := <-r.broken:
				if !errors.Is(err, queue.ErrMalformed) || !errors.Is(err, c.want) {
					t.Fatalf("Broken(%v)", err)
				}
			case <-time.After(wait):
				t.Fatal("no Broken")
			}
			if r.dev.Metrics().MalformedChains.Load() != 1 {
				t.Fatal("MalformedChains not counted")
			}
			r.dev.Reset()
			r.activate(v1)
			if n, _ := r.entropy(64); n != 64 {
				t.Fatalf("after reset: used len %d", n)
			}
		})
	}
}

func TestDevice(t *testing.T) {
	d := New()
	if d.ID() != virtio.DeviceEntropy || len(d.QueueMaxSizes()) != 1 || d.Features() != RingFeatures {
		t.Fatalf("id %d, queues %v, features %#x", d.ID(), d.QueueMaxSizes(), d.Features())
	}
	b := []byte{1, 2, 3, 4}
	d.WriteConfig(0, b)
	d.ReadConfig(0, b)
	if !bytes.Equal(b, make([]byte, 4)) {
		t.Fatalf("config reads %x", b)
	}
	g := virtiotest.NewGuest(t, 1<<20)
	q := g.NewQueue(0, 16)
	for name, a := range map[string]virtio.Activation{
		"no VERSION_1":  {Features: 0, Memory: g.Mem, Queues: []virtio.QueueConfig{q.Config()}},
		"extra feature": {Features: v1 | 1, Memory: g.Mem, Queues: []virtio.QueueConfig{q.Config()}},
		"two queues":    {Features: v1, Memory: g.Mem, Queues: []virtio.QueueConfig{q.Config(), q.Config()}},
	} {
		if err := d.Activate(a); err == nil {
			t.Errorf("%s: Activate succeeded", name)
		}
	}
	a := virtio.Activation{Features: v1, Memory: g.Mem, Queues: []virtio.QueueConfig{q.Config()}}
	if err := d.Activate(a); err != nil {
		t.Fatal(err)
	}
	if err := d.Activate(a); !errors.Is(err, ErrActive) {
		t.Fatalf("second Activate: %v", err)
	}
	d.Reset()
	d.Reset()
	if _, err := NewWithOptions(&Options{QueueSize: 100}); err == nil {
		t.Fatal("queue size 100 accepted")
	}
}

func TestResetStopsWorker(t *testing.T) {
	r := newRig(t, v1)
	r.entropy(32)
	r.dev.Reset()
	p := r.q.AddChain(virtiotest.Buf{Len: 32, Write: true})
	r.q.KickDevice()
	time.Sleep(50 * time.Millisecond)
	if _, ok := r.q.NextUsed(); ok {
		t.Fatal("served after Reset")
	}
	if !bytes.Equal(r.g.Bytes(p.Addr[0], 32), make([]byte, 32)) {
		t.Fatal("wrote guest memory after Reset")
	}
}
