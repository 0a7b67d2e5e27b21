package queue

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

func TestWorkersServe(t *testing.T) {
	g, d, q := setup(t, 8, 0)
	var kicks, interrupts atomic.Uint64
	w := &Workers{Name: "test", Broken: func(uint16, error) { t.Error("broken") }}
	w.Serve(q, d.Config(), Counters{Kicks: &kicks, Interrupts: &interrupts}, func(c *Chain) (uint32, error) {
		n := copy(c.Writable[0], "ok")
		return uint32(n), nil
	})
	for range 3 {
		p := d.AddChain(virtiotest.Buf{Len: 4, Write: true})
		d.KickDevice()
		if e := d.WaitUsed(5 * time.Second); e.ID != uint32(p.Head) || e.Len != 2 {
			t.Fatalf("used %+v, want head %d len 2", e, p.Head)
		}
		if string(g.Bytes(p.Addr[0], 2)) != "ok" {
			t.Fatal("handler's bytes not in the buffer")
		}
	}
	w.Stop()
	if !w.Stopping() {
		t.Fatal("Stopping false after Stop")
	}
	if kicks.Load() == 0 || interrupts.Load() == 0 {
		t.Fatalf("kicks %d interrupts %d, want both counted", kicks.Load(), interrupts.Load())
	}
	if !d.Interrupted() {
		t.Fatal("no interrupt signalled")
	}
}

func TestWorkersBroken(t *testing.T) {
	_, d, q := setup(t, 8, 0)
	errBad := errors.New("bad chain")
	got := make(chan error, 1)
	w := &Workers{Broken: func(i uint16, err error) { got <- err }}
	w.Serve(q, d.Config(), Counters{}, func(*Chain) (uint32, error) { return 0, errBad })
	d.AddChain(virtiotest.Buf{Len: 4, Write: true})
	d.KickDevice()
	select {
	case err := <-got:
		if !errors.Is(err, errBad) {
			t.Fatalf("Broken got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Broken not called")
	}
	w.Stop() // the worker already ended: Stop must not hang
	if d.UsedIdx() != 0 {
		t.Fatal("a chain the handler refused was returned")
	}
}

func TestWorkersGoMalformed(t *testing.T) {
	_, d, q := setup(t, 8, 0)
	got := make(chan error, 1)
	w := &Workers{Broken: func(i uint16, err error) { got <- err }}
	var c Chain
	w.Go(d.Config(), nil, func() error {
		for {
			ok, err := q.Pop(&c)
			if err != nil || !ok {
				return err
			}
		}
	})
	d.SetAvailIdx(100) // runs ahead of an 8-entry queue
	d.KickDevice()
	select {
	case err := <-got:
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("Broken got %v, want ErrMalformed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Broken not called")
	}
	w.Stop()
}
