package legacy

import (
	"sync"
	"time"

	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

// RTC ports: index (bit 7 masks NMI) and data.
const (
	RTCPort = 0x70
	RTCSize = 2
)

// MC146818 register indexes.
const (
	rtcSeconds   = 0x00
	rtcMinutes   = 0x02
	rtcHours     = 0x04
	rtcWeekday   = 0x06
	rtcDay       = 0x07
	rtcMonth     = 0x08
	rtcYear      = 0x09
	rtcRegA      = 0x0a
	rtcRegB      = 0x0b
	rtcRegC      = 0x0c
	rtcRegD      = 0x0d
	rtcCentury   = 0x32 // the century byte PC firmware keeps in CMOS RAM
	rtcRAMSize   = 128
	regAUIP      = 0x80 // update in progress
	regADefault  = 0x26 // 32.768 kHz time base, 1024 Hz periodic rate
	regB24h      = 0x02
	regBBinary   = 0x04 // DM: binary instead of BCD
	regBDefault  = regB24h
	regDValidRAM = 0x80 // VRT: battery good
	hourPM       = 0x80
)

// RTC is a minimal MC146818 CMOS clock: the time registers show the host's
// current UTC time (in BCD or binary, 24- or 12-hour, as register B asks),
// "update in progress" is never set, and the rest of the 128 bytes is plain
// RAM. It raises no interrupts (no alarms, no periodic or update ticks);
// the guest's writes to the time registers are ignored, so the guest sees
// the host's clock.
type RTC struct {
	now func() time.Time

	mu    sync.Mutex
	index byte
	ram   [rtcRAMSize]byte
}

// NewRTC returns a clock reading now (time.Now when nil).
func NewRTC(now func() time.Time) *RTC {
	if now == nil {
		now = time.Now
	}
	r := &RTC{now: now}
	r.ram[rtcRegA] = regADefault
	r.ram[rtcRegB] = regBDefault
	r.ram[rtcRegD] = regDValidRAM
	return r
}

// Register puts the clock on ports RTCPort..RTCPort+1.
func (r *RTC) Register(pio *bus.Bus) error {
	return pio.Register(RTCPort, RTCSize, r)
}

// Read implements bus.Device.
func (r *RTC) Read(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	clear(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch offset {
	case 0:
		data[0] = 0xff // the index register is write-only
	case 1:
		data[0] = r.readReg(r.index)
	default:
		data[0] = 0xff
	}
}

// Write implements bus.Device.
func (r *RTC) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	r.mu.Lock()
	defer r.mu.Unlock()
	switch offset {
	case 0:
		r.index = v & 0x7f
	case 1:
		r.writeReg(r.index, v)
	}
}

func (r *RTC) readReg(i byte) byte {
	t := r.now().UTC()
	switch i {
	case rtcSeconds:
		return r.encode(t.Second())
	case rtcMinutes:
		return r.encode(t.Minute())
	case rtcHours:
		return r.hours(t.Hour())
	case rtcWeekday:
		return r.encode(int(t.Weekday()) + 1)
	case rtcDay:
		return r.encode(t.Day())
	case rtcMonth:
		return r.encode(int(t.Month()))
	case rtcYear:
		return r.encode(t.Year() % 100)
	case rtcCentury:
		return r.encode(t.Year() / 100)
	case rtcRegA:
		return r.ram[rtcRegA] &^ regAUIP
	case rtcRegC:
		return 0 // no interrupt flags, ever
	case rtcRegD:
		return regDValidRAM
	default:
		return r.ram[i]
	}
}

func (r *RTC) writeReg(i, v byte) {
	switch i {
	case rtcSeconds, rtcMinutes, rtcHours, rtcWeekday, rtcDay, rtcMonth, rtcYear, rtcCentury, rtcRegC, rtcRegD:
		// Time comes from the host; C and D are read-only.
	case rtcRegA:
		r.ram[i] = v &^ regAUIP
	default:
		r.ram[i] = v
	}
}

// encode formats a time field in BCD unless register B selects binary.
func (r *RTC) encode(v int) byte {
	if r.ram[rtcRegB]&regBBinary != 0 {
		return byte(v)
	}
	return byte(v/10<<4 | v%10)
}

// hours formats the hour in 24- or 12-hour mode (bit 7 set for PM).
func (r *RTC) hours(h int) byte {
	if r.ram[rtcRegB]&regB24h != 0 {
		return r.encode(h)
	}
	pm := h >= 12
	h %= 12
	if h == 0 {
		h = 12
	}
	v := r.encode(h)
	if pm {
		v |= hourPM
	}
	return v
}
