// Package legacy answers the PC I/O ports a Linux guest touches that no
// real device behind them matters for, and the CMOS real-time clock.
// The in-kernel PIC, PIT (with its port 0x61 speaker dummy) and ELCR of KVM
// handle their own ports; these are the rest.
package legacy

import (
	"fmt"

	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

// SinkPorts are the single ports Sink covers by default:
// 0x80 (POST codes; Linux's outb_p/inb_p delay), 0x87 (DMA channel 0 page
// register, poked by probes) and 0xED (the alternative io_delay port).
var SinkPorts = []uint64{0x80, 0x87, 0xed}

// Sink is a port that ignores writes and reads as all-ones, like an ISA
// bus with nothing decoding the address, but without the VMM's
// "unknown port" logging: these accesses are expected and frequent.
type Sink struct{}

// Read fills data with 0xff.
func (Sink) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// Write ignores the access.
func (Sink) Write(offset uint64, data []byte) {}

// RegisterSinks registers a Sink at each port (SinkPorts when none are
// given). On error nothing stays registered.
func RegisterSinks(pio *bus.Bus, ports ...uint64) error {
	if len(ports) == 0 {
		ports = SinkPorts
	}
	for i, p := range ports {
		if err := pio.Register(p, 1, Sink{}); err != nil {
			for _, q := range ports[:i] {
				pio.Unregister(q)
			}
			return fmt.Errorf("register legacy port %#x: %w", p, err)
		}
	}
	return nil
}
