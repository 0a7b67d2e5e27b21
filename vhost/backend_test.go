package vhost_test

import (
	"slices"
	"testing"

	"github.com/hlsvmm/hlsvmm/vhost"
	"github.com/hlsvmm/hlsvmm/vhost/vhosttest"
	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
)

func TestNetBackend(t *testing.T) {
	r := newRig(t)
	var b vnet.Backend = vhost.NewNetBackend(r.net, r.tap)
	if b.Name() != "vhost-net" {
		t.Errorf("Name() = %q", b.Name())
	}
	want := uint64(version1 | eventIdx | indirect | mrgRxbuf | 1<<24) // NOTIFY_ON_EMPTY
	if got := b.Features(); got != want {
		t.Errorf("Features() = %#x, want %#x (no LOG_ALL, NET_HDR/ANY_LAYOUT, ACCESS_PLATFORM, RING_RESET)", got, want)
	}
	if got := b.Features() & vhosttest.NetFeatures; got != b.Features() {
		t.Errorf("Features() %#x not a subset of what vhost-net offered", b.Features())
	}
	p := vnet.PairConfig{Features: version1 | eventIdx | csum, Memory: r.mem, RX: r.rx, TX: r.tx}
	for range 2 { // start, stop, start again: driver reload
		r.fake.Reset()
		if err := b.Start(p); err != nil {
			t.Fatal(err)
		}
		wantSeq := slices.Clone(startSequence)
		wantSeq[0] = "SET_FEATURES 0x120000000"
		if got := r.fake.Ops(); !slices.Equal(got, wantSeq) {
			t.Errorf("Start calls:\n got %q\nwant %q", got, wantSeq)
		}
		r.fake.Consume(vhost.VringTX, 4)
		r.fake.Reset()
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if got := r.fake.Ops(); !slices.Equal(got, stopSequence) {
			t.Errorf("Stop calls:\n got %q\nwant %q", got, stopSequence)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !r.fake.Closed() {
		t.Error("Close left the vhost-net descriptor open")
	}
}
