package pci

import (
	"encoding/binary"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio"
	virtqueue "github.com/hlsvmm/hlsvmm/virtio/queue"
)

func TestState(t *testing.T) {
	r := newRig(t, netDevice())
	if s := r.tr.State(); s.Active || len(s.Queues) != 0 || s.Type != virtio.DeviceNet {
		t.Fatalf("before the driver: %+v", s)
	}
	a := r.bringUp(t, 1<<virtio.FeatureVersion1|1<<virtio.FeatureEventIdx)

	// The driver published 3 chains on queue 1 and wants an interrupt at 2.
	avail, err := r.mem.Slice(r.ring[1].driver, 6+2*256)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(avail[2:], 3)
	binary.LittleEndian.PutUint16(avail[4+2*256:], 2)
	if err := a.Queues[1].Kick.Signal(); err != nil {
		t.Fatal(err)
	}

	s := r.tr.State()
	if !s.Active || s.NeedsReset || !s.MSIX || s.Features != "0x120000000" || len(s.Queues) != 2 {
		t.Fatalf("after DRIVER_OK: %+v", s)
	}
	q := s.Queues[1]
	want := QueueState{Index: 1, Size: 256, Vector: 2, IOEventFD: true, IRQFD: true, KickPending: true,
		Rings: &virtqueue.Rings{AvailIdx: 3, UsedEvent: 2}}
	if q.Rings == nil || *q.Rings != *want.Rings {
		t.Fatalf("queue 1 rings %+v, want %+v (%s)", q.Rings, want.Rings, q.Err)
	}
	q.Rings = want.Rings
	if q != want {
		t.Errorf("queue 1: %+v, want %+v", q, want)
	}

	// Masked, with an interrupt waiting in the Call eventfd.
	r.drv.write(r.drv.entry(1)+12, 4, 1)
	if err := a.Queues[0].Call.Signal(); err != nil {
		t.Fatal(err)
	}
	q = r.tr.State().Queues[0]
	if q.IRQFD || !q.VectorMasked || !q.CallPending || q.VectorPending {
		t.Errorf("queue 0 masked: %+v", q)
	}
}
