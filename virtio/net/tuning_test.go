package net

import (
	"strings"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio"
	"golang.org/x/sys/unix"
)

func bitsOf(bits ...uint) uint64 {
	var v uint64
	for _, b := range bits {
		v |= 1 << b
	}
	return v
}

func TestParseOffload(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Offload
		str  string
	}{
		{"none", OffloadNone, "none"},
		{"csum", OffloadCsum, "csum"},
		{"csum,tso4,tso6,ecn", DefaultOffload, "csum,tso4,tso6,ecn"},
		{"ecn, tso6 ,csum", OffloadCsum | OffloadTSO6 | OffloadECN, "csum,tso6,ecn"},
		{"csum,tso4,tso6,ecn,ufo", DefaultOffload | OffloadUFO, "csum,tso4,tso6,ecn,ufo"},
		{"csum,ufo", OffloadCsum | OffloadUFO, "csum,ufo"},
		{"csum,csum", OffloadCsum, "csum"},
	} {
		got, err := ParseOffload(tc.in)
		if err != nil {
			t.Errorf("ParseOffload(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want || got.String() != tc.str {
			t.Errorf("ParseOffload(%q) = %v (%#x), want %v (%#x)", tc.in, got, uint8(got), tc.str, uint8(tc.want))
		}
		if back, err := ParseOffload(got.String()); err != nil || back != got {
			t.Errorf("%q does not parse back: %v, %v", got.String(), back, err)
		}
	}
}

func TestParseOffloadInvalid(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{"", "empty"},
		{" ", "empty"},
		{"tso4", "tso4 needs csum"},
		{"tso6", "tso6 needs csum"},
		{"ecn,tso4", "tso4 needs csum"},
		{"ufo", "ufo needs csum"},
		{"csum,ecn", "ecn needs tso4 or tso6"},
		{"csum,TSO4", `unknown offload "TSO4"`},
		{"csum,,tso4", `unknown offload ""`},
		{"gso", `unknown offload "gso"`},
		{"all", `unknown offload "all"`},
		{"none,csum", "none stands alone"},
	} {
		_, err := ParseOffload(tc.in)
		if err == nil {
			t.Errorf("ParseOffload(%q) accepted", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseOffload(%q) = %q, want one line mentioning %q", tc.in, err, tc.msg)
		}
	}
	if err := Offload(1 << 7).Validate(); err == nil {
		t.Error("unknown offload bit validated")
	}
}

func TestOffloadFeatures(t *testing.T) {
	if got := OffloadNone.Features(); got != 0 {
		t.Errorf("none offers %#x", got)
	}
	// The default offers exactly the offloads DeviceFeatures always had.
	if got, want := DefaultOffload.Features(), DeviceFeatures&OffloadFeatures; got != want {
		t.Errorf("default offloads %#x, want %#x", got, want)
	}
	want := bitsOf(FeatureCsum, FeatureGuestCsum, FeatureHostTSO6, FeatureGuestTSO6, FeatureHostUFO, FeatureGuestUFO)
	if got := (OffloadCsum | OffloadTSO6 | OffloadUFO).Features(); got != want {
		t.Errorf("csum,tso6,ufo offers %#x, want %#x", got, want)
	}
	all := (DefaultOffload | OffloadUFO).Features()
	if all != OffloadFeatures {
		t.Errorf("every offload offers %#x, OffloadFeatures is %#x", all, OffloadFeatures)
	}
}

func TestTuningFeatures(t *testing.T) {
	base := DeviceFeatures | RingFeatures
	if got := DefaultTuning().Features(base); got != base {
		t.Errorf("default tuning changes the offer: %#x, want %#x", got, base)
	}
	for _, tc := range []struct {
		name string
		t    Tuning
		want uint64
	}{
		{"offload none", Tuning{Offload: OffloadNone, EventIdx: true, IndirectDesc: true, MrgRxbuf: true}, base &^ OffloadFeatures},
		{"with ufo", Tuning{Offload: DefaultOffload | OffloadUFO, EventIdx: true, IndirectDesc: true, MrgRxbuf: true},
			base | bitsOf(FeatureHostUFO, FeatureGuestUFO)},
		{"no event idx", Tuning{Offload: DefaultOffload, IndirectDesc: true, MrgRxbuf: true}, base &^ bitsOf(virtio.FeatureEventIdx)},
		{"no indirect", Tuning{Offload: DefaultOffload, EventIdx: true, MrgRxbuf: true}, base &^ bitsOf(virtio.FeatureIndirectDesc)},
		{"no mrg rxbuf", Tuning{Offload: DefaultOffload, EventIdx: true, IndirectDesc: true}, base &^ bitsOf(FeatureMrgRxbuf)},
		{"everything off", Tuning{}, base &^ OffloadFeatures &^ bitsOf(virtio.FeatureEventIdx, virtio.FeatureIndirectDesc, FeatureMrgRxbuf)},
	} {
		got := tc.t.Features(base)
		if got != tc.want {
			t.Errorf("%s: offer %#x, want %#x", tc.name, got, tc.want)
		}
		// The device's own bits stay whatever the tuning.
		for _, b := range []uint{virtio.FeatureVersion1, FeatureMAC, FeatureStatus, FeatureMTU} {
			if !virtio.HasFeature(got, b) {
				t.Errorf("%s: feature bit %d dropped", tc.name, b)
			}
		}
	}
	// A ring feature the backend lacks is not brought back.
	if got := DefaultTuning().Features(DeviceFeatures | 1<<virtio.FeatureVersion1); virtio.HasFeature(got, virtio.FeatureEventIdx) {
		t.Errorf("tuning added EVENT_IDX to an offer without it: %#x", got)
	}
}

func TestTuningValidate(t *testing.T) {
	if err := DefaultTuning().Validate(); err != nil {
		t.Fatal(err)
	}
	err := Tuning{Offload: OffloadTSO4}.Validate()
	if err == nil || !strings.Contains(err.Error(), "tso4 needs csum") {
		t.Errorf("tso4 without csum: %v", err)
	}
}

func TestTapOffloadUFO(t *testing.T) {
	for _, tc := range []struct {
		acked uint64
		want  uint
	}{
		{bitsOf(FeatureGuestUFO), 0}, // no checksum offload: nothing
		{bitsOf(FeatureHostUFO, FeatureGuestCsum), unix.TUN_F_CSUM},
		{bitsOf(FeatureGuestCsum, FeatureGuestUFO), unix.TUN_F_CSUM | unix.TUN_F_UFO},
		{(DefaultOffload | OffloadUFO).Features(),
			unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN | unix.TUN_F_UFO},
		{DefaultOffload.Features(), unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN},
	} {
		if got := TapOffload(tc.acked); got != tc.want {
			t.Errorf("TapOffload(%#x) = %#x, want %#x", tc.acked, got, tc.want)
		}
	}
}

// The kernel's TAP takes every TUNSETOFFLOAD set an accepted offload
// choice can produce, UFO included.
func TestTapOffloadRealTap(t *testing.T) {
	tap, _ := openTapInNetns(t, 0x88b5)
	for _, s := range []string{"none", "csum", "csum,tso4", "csum,tso6,ecn", "csum,tso4,tso6,ecn", "csum,ufo", "csum,tso4,tso6,ecn,ufo"} {
		o, err := ParseOffload(s)
		if err != nil {
			t.Fatal(err)
		}
		flags := TapOffload(o.Features())
		if err := tap.SetOffload(flags); err != nil {
			t.Errorf("--offload %s: TUNSETOFFLOAD %#x: %v", s, flags, err)
		}
	}
}

func TestDeviceTuning(t *testing.T) {
	pairs := func() []Pair { return []Pair{{&fakeBackend{features: RingFeatures}, newFakeTap()}} }
	d, err := New(Config{Pairs: pairs()})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Features(), DeviceFeatures|RingFeatures; got != want {
		t.Errorf("no Tuning: offered %#x, want today's %#x", got, want)
	}
	none := Tuning{Offload: OffloadNone, EventIdx: true, IndirectDesc: true}
	d, err = New(Config{Pairs: pairs(), Tuning: &none})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Features(), (DeviceFeatures|RingFeatures)&^OffloadFeatures&^bitsOf(FeatureMrgRxbuf); got != want {
		t.Errorf("offload none, no MRG_RXBUF: offered %#x, want %#x", got, want)
	}
	if _, err := New(Config{Pairs: pairs(), Tuning: &Tuning{Offload: OffloadECN | OffloadCsum}}); err == nil || !strings.Contains(err.Error(), "ecn needs tso4 or tso6") {
		t.Errorf("invalid tuning: %v", err)
	}

	// UFO offered, accepted, and handed to the TAP.
	ufo := DefaultTuning()
	ufo.Offload |= OffloadUFO
	p := pairs()
	d, err = New(Config{Pairs: p, Tuning: &ufo})
	if err != nil {
		t.Fatal(err)
	}
	if !virtio.HasFeature(d.Features(), FeatureGuestUFO) || !virtio.HasFeature(d.Features(), FeatureHostUFO) {
		t.Fatalf("ufo not offered: %#x", d.Features())
	}
	acked := bitsOf(virtio.FeatureVersion1, FeatureGuestCsum, FeatureGuestUFO)
	_, _, _, a, _ := activation(t, acked, 256)
	if err := d.Activate(a); err != nil {
		t.Fatal(err)
	}
	defer d.Reset()
	if off, ok := p[0].Tap.(*fakeTap).lastOffload(); !ok || off != unix.TUN_F_CSUM|unix.TUN_F_UFO {
		t.Errorf("TAP offload %#x, want CSUM|UFO", off)
	}
}
