package vmm

import (
	"testing"
	"time"
)

func TestCMOSClock(t *testing.T) {
	now := time.Date(2026, time.November, 29, 13, 45, 7, 0, time.UTC)
	c := newCMOS(func() time.Time { return now })
	read := func(reg byte) byte {
		c.Write(0, []byte{reg | 0x80}) // NMI-mask bit set, as Linux does
		var b [1]byte
		c.Read(1, b[:])
		return b[0]
	}
	for _, tc := range []struct {
		reg, want byte
	}{
		{rtcSeconds, 0x07}, {rtcMinutes, 0x45}, {rtcHours, 0x13}, {rtcDayOfMonth, 0x29},
		{rtcMonth, 0x11}, {rtcYear, 0x26}, {rtcCentury, 0x20}, {rtcWeekday, 0x01},
		{rtcStatusA, 0x26}, {rtcStatusB, 0x02}, {rtcStatusD, 0x80}, {rtcStatusC, 0},
	} {
		if got := read(tc.reg); got != tc.want {
			t.Errorf("register %#x = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
	// Update-in-progress never reads as set: Linux's rtc_cmos spins on it.
	if read(rtcStatusA)&0x80 != 0 {
		t.Fatal("UIP set")
	}
	// NVRAM is storage; the clock and status A ignore writes; B stays BCD 24h.
	for _, w := range [][2]byte{{0x40, 0x5a}, {rtcSeconds, 0x33}, {rtcStatusA, 0xff}, {rtcStatusB, 0x86}} {
		c.Write(0, []byte{w[0]})
		c.Write(1, []byte{w[1]})
	}
	if read(0x40) != 0x5a || read(rtcSeconds) != 0x07 || read(rtcStatusA) != 0x26 || read(rtcStatusB) != 0x82 {
		t.Fatalf("after writes: nvram %#x sec %#x A %#x B %#x", read(0x40), read(rtcSeconds), read(rtcStatusA), read(rtcStatusB))
	}
	var b [1]byte
	c.Read(0, b[:])
	if b[0] != rtcStatusB {
		t.Fatalf("index port reads %#x", b[0])
	}
}
