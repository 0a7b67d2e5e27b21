package queue

import (
	"errors"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

func TestPeekFollowsDriverAndDevice(t *testing.T) {
	g, d, q := setup(t, 8, featEventIdx)
	var c Chain
	d.AddChain(virtiotest.Buf{Len: 64, Write: true})
	d.AddChain(virtiotest.Buf{Len: 64, Write: true})
	d.SetAvailFlags(AvailFNoInterrupt)
	d.SetUsedEvent(7)
	if ok, err := q.Pop(&c); !ok || err != nil {
		t.Fatalf("Pop = %v, %v", ok, err)
	}
	if err := q.AddUsed(c.Head, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := q.EnableNotify(); err != nil {
		t.Fatal(err)
	}
	got, err := Peek(g.Mem, d.Config())
	if err != nil {
		t.Fatal(err)
	}
	want := Rings{AvailFlags: AvailFNoInterrupt, AvailIdx: 2, UsedEvent: 7, UsedIdx: 1, AvailEvent: 2}
	if got != want {
		t.Errorf("Peek = %+v, want %+v", got, want)
	}
}

func TestPeekRefusesBadConfig(t *testing.T) {
	g, d, _ := setup(t, 8, 0)
	cfg := d.Config()
	cfg.Size = 6
	if _, err := Peek(g.Mem, cfg); !errors.Is(err, ErrSize) {
		t.Errorf("size 6: err = %v, want ErrSize", err)
	}
	cfg = d.Config()
	cfg.Device = 0
	if _, err := Peek(g.Mem, cfg); !errors.Is(err, ErrRing) {
		t.Errorf("device ring at 0: err = %v, want ErrRing", err)
	}
}
