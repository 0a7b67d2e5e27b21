package serial

import (
	"context"
	"testing"
)

// FuzzRegisters drives the UART with arbitrary guest accesses and input
// and checks invariants the driver relies on: the FIFO never exceeds its
// depth, IIR always reads as a valid 16550A value, the line is high
// exactly when an interrupt is pending and gated through.
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0x83, 0x03, 0x84, 0x0b, 0x82, 0x07, 0x81, 0x03, 0x40, 0x05, 0x00, 0x02})
	f.Add([]byte{0x84, 0x1f, 0x80, 'a', 0x80, 'b', 0x06, 0x05, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		line := &fakeLine{}
		u := New(Config{IRQ: COM1IRQ, Line: line})
		defer u.Close()
		for i := 0; i+1 < len(ops); i += 2 {
			op, v := ops[i], ops[i+1]
			reg := uint64(op & 0x07)
			switch {
			case op&0x80 != 0:
				out(u, reg, v)
			case op&0x40 != 0:
				ctx, cancel := context.WithCancel(context.Background())
				cancel() // never block: deliver what fits
				u.Receive(ctx, []byte{v, v ^ 0xff})
			default:
				in(u, reg)
			}
			u.mu.Lock()
			if len(u.rx) > fifoSize {
				t.Fatalf("FIFO holds %d bytes", len(u.rx))
			}
			iir := u.iir()
			if code := iir & 0x0f; code != iirNoInt && code != iirMSI && code != iirTHRI && code != iirRDI && code != iirRLSI {
				t.Fatalf("IIR = %#x", iir)
			}
			if iir&0x30 != 0 {
				t.Fatalf("IIR reserved bits set: %#x", iir)
			}
			want := iir&iirNoInt == 0 && u.mcr&mcrOUT2 != 0 && u.mcr&mcrLoop == 0
			if line.level() != want {
				t.Fatalf("line %v, want %v (IIR %#x MCR %#x)", line.level(), want, iir, u.mcr)
			}
			u.mu.Unlock()
		}
	})
}
