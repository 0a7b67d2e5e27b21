package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
	"golang.org/x/sys/unix"
)

func TestConfigSpace(t *testing.T) {
	d, err := New(Config{Pairs: []Pair{{&fakeBackend{features: RingFeatures}, newFakeTap()}}, MTU: 9000})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x02, 0x00, 0x00, 0x01, 0x77, 0x01, 1, 0, 1, 0, 0x28, 0x23}
	got := make([]byte, 12)
	d.ReadConfig(0, got)
	if !bytes.Equal(got, want) {
		t.Fatalf("config space = % x, want % x", got, want)
	}
	// Every offset and width, including past the end and across it.
	for off := uint64(0); off < 20; off++ {
		for _, w := range []int{1, 2, 4, 8} {
			b := bytes.Repeat([]byte{0xaa}, w)
			d.ReadConfig(off, b)
			for i := range b {
				var exp byte
				if int(off)+i < len(want) {
					exp = want[int(off)+i]
				}
				if b[i] != exp {
					t.Fatalf("read %d bytes at %d: byte %d = %#x, want %#x", w, off, i, b[i], exp)
				}
			}
		}
	}
	for _, off := range []uint64{math.MaxUint64, math.MaxUint64 - 2, 1 << 63} {
		b := []byte{1, 2, 3, 4}
		d.ReadConfig(off, b)
		if !bytes.Equal(b, make([]byte, 4)) {
			t.Fatalf("read at %#x = % x, want zeros", off, b)
		}
	}
	d.WriteConfig(0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0})
	d.ReadConfig(0, got)
	if !bytes.Equal(got, want) {
		t.Fatalf("config space changed by a driver write: % x", got)
	}

	mac, err := ParseMAC("52:54:00:12:34:56")
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := New(Config{Pairs: []Pair{{&fakeBackend{features: RingFeatures}, newFakeTap()}}, MAC: mac})
	d2.ReadConfig(0, got)
	if !bytes.Equal(got[:6], mac[:]) || binary.LittleEndian.Uint16(got[10:]) != DefaultMTU {
		t.Fatalf("config space with MAC %x = % x", mac, got)
	}
}

func TestParseMAC(t *testing.T) {
	for _, bad := range []string{"", "01:00:00:00:00:01", "02:00:00:01:77", "02:00:00:01:77:01:02", "zz:00:00:01:77:01", "02-00-00-01-77-01"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) accepted", bad)
		}
	}
}

func TestNewValidates(t *testing.T) {
	tap := newFakeTap()
	be := &fakeBackend{features: RingFeatures}
	for name, cfg := range map[string]Config{
		"no pairs":       {},
		"17 pairs":       {Pairs: make17(be, tap)},
		"nil backend":    {Pairs: []Pair{{nil, tap}}},
		"nil tap":        {Pairs: []Pair{{be, nil}}},
		"nil second tap": {Pairs: []Pair{{be, tap}, {be, nil}}},
		"multicast MAC":  {Pairs: []Pair{{be, tap}}, MAC: [6]byte{1, 2, 3, 4, 5, 6}},
		"tiny MTU":       {Pairs: []Pair{{be, tap}}, MTU: 67},
		"odd queue size": {Pairs: []Pair{{be, tap}}, QueueSize: 100},
		"no VERSION_1":   {Pairs: []Pair{{&fakeBackend{features: RingFeatures &^ (1 << virtio.FeatureVersion1)}, tap}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted", name)
		}
	}
}

func make17(be Backend, tap Tap) []Pair {
	p := make([]Pair, MaxPairs+1)
	for i := range p {
		p[i] = Pair{be, tap}
	}
	return p
}

func TestFeatures(t *testing.T) {
	all := DeviceFeatures | RingFeatures
	for _, tc := range []struct {
		backend, want uint64
	}{
		{RingFeatures, all},
		{RingFeatures | 1<<40 | 1<<FeatureCtrlVQ, all}, // backend extras are not offered
		{1 << virtio.FeatureVersion1, DeviceFeatures | 1<<virtio.FeatureVersion1},
		{RingFeatures &^ (1 << virtio.FeatureEventIdx), all &^ (1 << virtio.FeatureEventIdx)},
	} {
		d, err := New(Config{Pairs: []Pair{{&fakeBackend{features: tc.backend}, newFakeTap()}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Features(); got != tc.want {
			t.Errorf("backend %#x: offered %#x, want %#x", tc.backend, got, tc.want)
		}
	}
	for _, b := range []uint{FeatureCsum, FeatureGuestCsum, FeatureGuestTSO4, FeatureGuestTSO6, FeatureGuestECN,
		FeatureHostTSO4, FeatureHostTSO6, FeatureHostECN, FeatureMrgRxbuf, FeatureMAC, FeatureStatus, FeatureMTU,
		virtio.FeatureEventIdx, virtio.FeatureIndirectDesc, virtio.FeatureVersion1} {
		if !virtio.HasFeature(all, b) {
			t.Errorf("feature bit %d not offered", b)
		}
	}
	if virtio.HasFeature(all, FeatureMQ) || virtio.HasFeature(all, FeatureCtrlVQ) {
		t.Error("MQ/CTRL_VQ offered without a control queue")
	}
}

func TestTapOffload(t *testing.T) {
	f := func(bits ...uint) uint64 {
		var v uint64
		for _, b := range bits {
			v |= 1 << b
		}
		return v
	}
	for _, tc := range []struct {
		acked uint64
		want  uint
	}{
		{0, 0},
		{f(FeatureCsum, FeatureHostTSO4), 0}, // host-side bits: not the TAP's to deliver
		{f(FeatureGuestTSO4, FeatureGuestTSO6, FeatureGuestECN), 0},
		{f(FeatureGuestCsum), unix.TUN_F_CSUM},
		{f(FeatureGuestCsum, FeatureGuestTSO4), unix.TUN_F_CSUM | unix.TUN_F_TSO4},
		{f(FeatureGuestCsum, FeatureGuestTSO6), unix.TUN_F_CSUM | unix.TUN_F_TSO6},
		{f(FeatureGuestCsum, FeatureGuestECN), unix.TUN_F_CSUM},
		{f(FeatureGuestCsum, FeatureGuestTSO4, FeatureGuestTSO6, FeatureGuestECN),
			unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN},
	} {
		if got := TapOffload(tc.acked); got != tc.want {
			t.Errorf("TapOffload(%#x) = %#x, want %#x", tc.acked, got, tc.want)
		}
	}
}

// activation builds an Activation over a fresh test guest.
func activation(t *testing.T, features uint64, size uint16) (*virtiotest.Guest, *virtiotest.Queue, *virtiotest.Queue, virtio.Activation, chan error) {
	g := virtiotest.NewGuest(t, 4<<20)
	rx, tx := g.NewQueue(0, size), g.NewQueue(1, size)
	broken := make(chan error, 4)
	return g, rx, tx, virtio.Activation{
		Features: features,
		Memory:   g.Mem,
		Queues:   []virtio.QueueConfig{rx.Config(), tx.Config()},
		Broken:   func(err error) { broken <- err },
	}, broken
}

func TestActivateResetWithFakeBackend(t *testing.T) {
	tap := newFakeTap()
	be := &fakeBackend{features: RingFeatures}
	d, err := New(Config{Pairs: []Pair{{be, tap}}})
	if err != nil {
		t.Fatal(err)
	}
	acked := uint64(1<<virtio.FeatureVersion1 | 1<<FeatureGuestCsum | 1<<FeatureGuestTSO4 | 1<<FeatureMrgRxbuf)
	_, rx, tx, a, broken := activation(t, acked, 256)
	if err := d.Activate(a); err != nil {
		t.Fatal(err)
	}
	if off, ok := tap.lastOffload(); !ok || off != unix.TUN_F_CSUM|unix.TUN_F_TSO4 {
		t.Fatalf("TAP offload = %#x, %v", off, ok)
	}
	if len(be.started) != 1 {
		t.Fatalf("backend started %d times", len(be.started))
	}
	if d.ActivePairs() != 1 {
		t.Fatalf("ActivePairs %d, want 1", d.ActivePairs())
	}
	p := be.started[0]
	if p.Features != acked || p.RX.Desc != rx.Desc || p.TX.Desc != tx.Desc || p.Memory != a.Memory {
		t.Fatalf("pair config = %+v", p)
	}
	p.Broken(errors.New("boom"))
	if err := <-broken; err == nil {
		t.Fatal("Broken not passed through")
	}
	if err := d.Activate(a); !errors.Is(err, ErrActive) {
		t.Fatalf("second Activate: %v", err)
	}
	d.Reset()
	if be.stops != 1 {
		t.Fatalf("Reset stopped the backend %d times", be.stops)
	}
	d.Reset() // idempotent: nothing running
	if be.stops != 1 {
		t.Fatalf("second Reset stopped the backend again")
	}
	if err := d.Activate(a); err != nil {
		t.Fatalf("Activate after Reset: %v", err)
	}
	if err := d.Close(); err != nil || be.stops != 2 || be.closes != 1 {
		t.Fatalf("Close: %v, stops %d closes %d", err, be.stops, be.closes)
	}
	if len(tap.queueOps) != 0 {
		t.Fatalf("a one-pair device attached or detached its TAP queue: %v", tap.queueOps)
	}
}

func TestActivateRejects(t *testing.T) {
	be := &fakeBackend{features: RingFeatures}
	d, _ := New(Config{Pairs: []Pair{{be, newFakeTap()}}, QueueSize: 128})
	v1 := uint64(1 << virtio.FeatureVersion1)
	for name, mod := range map[string]func(*virtio.Activation){
		"not offered":    func(a *virtio.Activation) { a.Features |= 1 << FeatureMQ },
		"no VERSION_1":   func(a *virtio.Activation) { a.Features = 1 << FeatureMAC },
		"one queue":      func(a *virtio.Activation) { a.Queues = a.Queues[:1] },
		"queue too big":  func(a *virtio.Activation) { a.Queues[0].Size = 256 },
		"queues swapped": func(a *virtio.Activation) { a.Queues[0], a.Queues[1] = a.Queues[1], a.Queues[0] },
		"no kick":        func(a *virtio.Activation) { a.Queues[1].Kick = nil },
	} {
		_, _, _, a, _ := activation(t, v1, 128)
		mod(&a)
		if err := d.Activate(a); err == nil {
			t.Errorf("%s: Activate accepted", name)
		}
	}
	if len(be.started) != 0 {
		t.Fatal("backend started by a rejected activation")
	}
	be.startErr = errors.New("no")
	_, _, _, a, _ := activation(t, v1, 128)
	if err := d.Activate(a); err == nil {
		t.Fatal("Activate succeeded with a failing backend")
	}
	be.startErr = nil
	if err := d.Activate(a); err != nil {
		t.Fatalf("Activate after a failed one: %v", err)
	}
}
