package legacy

import (
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

func TestSinks(t *testing.T) {
	var pio bus.Bus
	if err := RegisterSinks(&pio); err != nil {
		t.Fatal(err)
	}
	for _, p := range SinkPorts {
		if !pio.Write(p, []byte{0x42}) {
			t.Fatalf("port %#x not claimed", p)
		}
		b := []byte{0}
		if !pio.Read(p, b) || b[0] != 0xff {
			t.Fatalf("port %#x read %#x", p, b[0])
		}
	}
	var other bus.Bus
	other.Register(0xed, 1, Sink{})
	if err := RegisterSinks(&other); err == nil {
		t.Fatal("overlapping sink registered")
	}
	if other.Read(0x80, []byte{0}) {
		t.Fatal("failed RegisterSinks left port 0x80 registered")
	}
}

// cmos reads register i the way Linux's CMOS_READ does.
func cmos(r *RTC, i byte) byte {
	r.Write(0, []byte{i | 0x80}) // with NMI masked, as the kernel often does
	b := []byte{0}
	r.Read(1, b)
	return b[0]
}

func TestRTCTime(t *testing.T) {
	now := time.Date(2026, time.March, 7, 21, 4, 59, 0, time.FixedZone("X", 3600))
	r := NewRTC(func() time.Time { return now })
	var pio bus.Bus
	if err := r.Register(&pio); err != nil {
		t.Fatal(err)
	}
	if cmos(r, rtcRegA)&regAUIP != 0 {
		t.Fatal("update in progress set: Linux would spin")
	}
	if cmos(r, rtcRegD)&regDValidRAM == 0 {
		t.Fatal("RTC reports a dead battery")
	}
	// BCD, 24 h, UTC (20:04:59 on Saturday 2026-03-07).
	want := map[byte]byte{rtcSeconds: 0x59, rtcMinutes: 0x04, rtcHours: 0x20, rtcWeekday: 0x07,
		rtcDay: 0x07, rtcMonth: 0x03, rtcYear: 0x26, rtcCentury: 0x20}
	for reg, w := range want {
		if got := cmos(r, reg); got != w {
			t.Errorf("BCD register %#x = %#x, want %#x", reg, got, w)
		}
	}
	// Binary, 12 h.
	cmos(r, rtcRegB)
	r.Write(1, []byte{regBBinary})
	want = map[byte]byte{rtcSeconds: 59, rtcHours: 8 | hourPM, rtcYear: 26, rtcCentury: 20}
	for reg, w := range want {
		if got := cmos(r, reg); got != w {
			t.Errorf("binary register %#x = %#x, want %#x", reg, got, w)
		}
	}
	// Time writes do not change what the guest reads.
	cmos(r, rtcSeconds)
	r.Write(1, []byte{0})
	if got := cmos(r, rtcSeconds); got != 59 {
		t.Errorf("seconds after a write = %d", got)
	}
}

func TestRTCMidnightAndNoonIn12h(t *testing.T) {
	for _, c := range []struct {
		hour int
		want byte
	}{{0, 0x12}, {11, 0x11}, {12, 0x12 | hourPM}, {23, 0x11 | hourPM}} {
		now := time.Date(2026, 1, 1, c.hour, 0, 0, 0, time.UTC)
		r := NewRTC(func() time.Time { return now })
		cmos(r, rtcRegB)
		r.Write(1, []byte{0}) // BCD, 12 h
		if got := cmos(r, rtcHours); got != c.want {
			t.Errorf("hour %d reads %#x, want %#x", c.hour, got, c.want)
		}
	}
}

func TestRTCRAM(t *testing.T) {
	r := NewRTC(nil)
	for _, i := range []byte{0x0e, 0x10, 0x3f, 0x7f} {
		cmos(r, i)
		r.Write(1, []byte{i ^ 0x5a})
		if got := cmos(r, i); got != i^0x5a {
			t.Errorf("CMOS RAM %#x = %#x", i, got)
		}
	}
	if got := cmos(r, rtcRegC); got != 0 {
		t.Errorf("register C = %#x", got)
	}
	b := []byte{0, 0, 0, 0}
	r.Read(0, b) // index port is write-only; wide access tolerated
	r.Read(5, b)
	r.Write(5, b)
}
