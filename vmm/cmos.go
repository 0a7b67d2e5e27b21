package vmm

import (
	"sync"
	"time"
)

// cmos is the PC's MC146818 real-time clock and CMOS RAM at ports 0x70
// (index; bit 7 masks NMI) and 0x71 (data). The clock reads the host's
// time in UTC, BCD, 24-hour mode, and is never "updating"; the guest's
// writes to the time registers are ignored (Linux keeps time with
// kvm-clock and only reads the RTC at boot). The rest of the 128 bytes is
// plain storage. Linux's rtc_cmos driver probes it at boot and spins while
// the update-in-progress bit reads as set, so an absent RTC (all-ones)
// stalls the boot.
type cmos struct {
	now func() time.Time

	mu    sync.Mutex
	index byte
	ram   [128]byte
}

// MC146818 register numbers and bits.
const (
	rtcSeconds    = 0x00
	rtcMinutes    = 0x02
	rtcHours      = 0x04
	rtcWeekday    = 0x06
	rtcDayOfMonth = 0x07
	rtcMonth      = 0x08
	rtcYear       = 0x09
	rtcStatusA    = 0x0a
	rtcStatusB    = 0x0b
	rtcStatusC    = 0x0c
	rtcStatusD    = 0x0d
	rtcCentury    = 0x32

	rtcStatusADefault = 0x26 // 32.768 kHz time base, 1024 Hz rate, UIP clear
	rtcStatusB24h     = 0x02 // 24-hour mode, BCD, no interrupts
	rtcStatusDValid   = 0x80 // VRT: RAM and time valid
	cmosIndexMask     = 0x7f // bit 7 of the index port is the NMI mask
)

func newCMOS(now func() time.Time) *cmos {
	c := &cmos{now: now}
	c.ram[rtcStatusA] = rtcStatusADefault
	c.ram[rtcStatusB] = rtcStatusB24h
	c.ram[rtcStatusD] = rtcStatusDValid
	return c
}

func bcd(v int) byte { return byte(v/10<<4 | v%10) }

// Read implements bus.Device over ports 0x70-0x71.
func (c *cmos) Read(offset uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		data[i] = 0xff
	}
	if offset == 0 {
		data[0] = c.index
		return
	}
	if offset != 1 || len(data) == 0 {
		return
	}
	t := c.now().UTC()
	switch c.index {
	case rtcSeconds:
		data[0] = bcd(t.Second())
	case rtcMinutes:
		data[0] = bcd(t.Minute())
	case rtcHours:
		data[0] = bcd(t.Hour())
	case rtcWeekday:
		data[0] = bcd(int(t.Weekday()) + 1)
	case rtcDayOfMonth:
		data[0] = bcd(t.Day())
	case rtcMonth:
		data[0] = bcd(int(t.Month()))
	case rtcYear:
		data[0] = bcd(t.Year() % 100)
	case rtcCentury:
		data[0] = bcd(t.Year() / 100)
	case rtcStatusC:
		data[0] = 0 // no interrupt flags; reading clears them
	default:
		data[0] = c.ram[c.index]
	}
}

// Write implements bus.Device over ports 0x70-0x71.
func (c *cmos) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch offset {
	case 0:
		c.index = data[0] & cmosIndexMask
	case 1:
		switch c.index {
		case rtcSeconds, rtcMinutes, rtcHours, rtcWeekday, rtcDayOfMonth, rtcMonth, rtcYear, rtcCentury,
			rtcStatusA, rtcStatusC, rtcStatusD:
			// The clock follows the host; status A/C/D are read-only here.
		case rtcStatusB:
			// Keep 24-hour BCD: the read side always encodes that way.
			c.ram[rtcStatusB] = data[0]&^0x06 | rtcStatusB24h
		default:
			c.ram[c.index] = data[0]
		}
	}
}
