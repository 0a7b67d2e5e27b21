package serial

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeLine records every level change the UART makes.
type fakeLine struct {
	mu     sync.Mutex
	levels []bool
}

func (f *fakeLine) SetIRQLine(irq uint32, level bool) error {
	if irq != COM1IRQ {
		return errors.New("wrong irq")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.levels = append(f.levels, level)
	return nil
}

func (f *fakeLine) level() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.levels) > 0 && f.levels[len(f.levels)-1]
}

func (f *fakeLine) changes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.levels)
}

// syncBuffer is a bytes.Buffer safe for the UART and the test goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestUART(t *testing.T) (*UART, *fakeLine, *syncBuffer) {
	t.Helper()
	line := &fakeLine{}
	out := &syncBuffer{}
	u := New(Config{IRQ: COM1IRQ, Line: line, Out: out})
	t.Cleanup(func() { u.Close() })
	return u, line, out
}

func in(u *UART, reg uint64) byte {
	var b [1]byte
	u.Read(reg, b[:])
	return b[0]
}

func out(u *UART, reg uint64, v byte) { u.Write(reg, []byte{v}) }

// linuxStartup programs the UART the way serial8250_do_startup and
// serial8250_set_termios leave it: FIFO on and cleared, 8N1, DTR|RTS|OUT2.
func linuxStartup(u *UART) {
	out(u, regIIR, fcrEnable)
	out(u, regIIR, fcrEnable|fcrClearRX|fcrClearTX)
	out(u, regIIR, 0)
	in(u, regLSR)
	in(u, regData)
	in(u, regIIR)
	in(u, regMSR)
	out(u, regLCR, 0x03)
	out(u, regMCR, mcrDTR|mcrRTS|mcrOUT2)
	out(u, regIIR, fcrEnable|0x80) // 8-byte trigger, as Linux does for 16550A
}

// TestAutoconfig16550A replays the probes of autoconfig() and
// autoconfig_16550a() in drivers/tty/serial/8250/8250_port.c and checks
// each answer leads the driver to PORT_16550A.
func TestAutoconfig16550A(t *testing.T) {
	u, _, _ := newTestUART(t)

	// IER probe: the low nibble is read/write, nothing else sticks.
	saveIER := in(u, regIER)
	out(u, regIER, 0)
	if got := in(u, regIER) & 0x0f; got != 0 {
		t.Fatalf("IER after writing 0 = %#x, want 0", got)
	}
	out(u, regIER, 0x0f)
	if got := in(u, regIER) & 0x0f; got != 0x0f {
		t.Fatalf("IER after writing 0x0f = %#x, want 0x0f", got)
	}
	out(u, regIER, saveIER)

	// Loopback probe: MCR = LOOP | OUT2 | RTS must read back DCD | CTS.
	saveMCR := in(u, regMCR)
	out(u, regMCR, mcrLoop|0x0a)
	if got := in(u, regMSR) & 0xf0; got != msrDCD|msrCTS {
		t.Fatalf("loopback MSR status = %#x, want %#x", got, msrDCD|msrCTS)
	}
	out(u, regMCR, saveMCR)

	// FIFO type: EFR (a no-op FCR write here), then FIFO on, IIR bits 6-7.
	saveLCR := in(u, regLCR)
	out(u, regLCR, 0xbf)
	out(u, regIIR, 0)
	out(u, regLCR, 0)
	out(u, regIIR, fcrEnable)
	if got := in(u, regIIR) >> 6; got != 3 {
		t.Fatalf("IIR>>6 = %d, want 3 (16550A)", got)
	}

	// Not a 16650: no EFR behind LCR 0x80 or 0xbf (reads must not be 0).
	out(u, regLCR, 0x80)
	if in(u, regIIR) == 0 {
		t.Fatal("EFR probe with LCR=0x80 read 0: driver would detect a 16650")
	}
	out(u, regLCR, 0xbf)
	if in(u, regIIR) == 0 {
		t.Fatal("EFR probe with LCR=0xbf read 0: driver would detect an EFR UART")
	}

	// Not a 16750: 64-byte FIFO bit never shows in IIR.
	out(u, regLCR, 0)
	out(u, regIIR, fcrEnable|0x20)
	s1 := in(u, regIIR) & 0xe0
	out(u, regIIR, fcrEnable)
	out(u, regLCR, 0x80)
	out(u, regIIR, fcrEnable|0x20)
	s2 := in(u, regIIR) & 0xe0
	out(u, regIIR, fcrEnable)
	out(u, regLCR, 0)
	if s1 == 0xc0 && s2 == 0xe0 {
		t.Fatal("IIR reports a 64-byte FIFO: driver would detect a 16750")
	}

	// Not an XScale: IER bit 6 (UUE) does not stick.
	ier := in(u, regIER)
	out(u, regIER, ier|0x40)
	if in(u, regIER)&0x40 != 0 {
		t.Fatal("IER.UUE sticks: driver would detect an XScale UART")
	}
	out(u, regIER, ier)
	out(u, regLCR, saveLCR)
}

func TestTransmit(t *testing.T) {
	u, _, o := newTestUART(t)
	linuxStartup(u)
	for _, c := range []byte("Linux version\r\n") {
		if in(u, regLSR)&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
			t.Fatal("transmitter not empty before write")
		}
		out(u, regData, c)
	}
	if got := o.String(); got != "Linux version\r\n" {
		t.Fatalf("output = %q", got)
	}
}

func TestReceiveRaisesAndReadLowersIRQ(t *testing.T) {
	u, line, _ := newTestUART(t)
	linuxStartup(u)
	out(u, regIER, ierRDI|ierRLSI)
	if line.level() {
		t.Fatal("line high before input")
	}
	if n, err := u.Receive(context.Background(), []byte("ok")); n != 2 || err != nil {
		t.Fatalf("Receive = %d, %v", n, err)
	}
	if !line.level() {
		t.Fatal("line low with received data and IER.RDI set")
	}
	if got := in(u, regLSR); got&lsrDR == 0 {
		t.Fatalf("LSR = %#x, DR clear", got)
	}
	if got := in(u, regIIR); got != iirFIFOEnable|iirRDI {
		t.Fatalf("IIR = %#x, want %#x", got, iirFIFOEnable|iirRDI)
	}
	if a, b := in(u, regData), in(u, regData); a != 'o' || b != 'k' {
		t.Fatalf("RBR = %q %q", a, b)
	}
	if line.level() {
		t.Fatal("line still high after the FIFO was drained")
	}
	if got := in(u, regLSR); got&lsrDR != 0 {
		t.Fatalf("LSR = %#x, DR still set", got)
	}
	if got := in(u, regIIR); got != iirFIFOEnable|iirNoInt {
		t.Fatalf("IIR = %#x, want no interrupt", got)
	}
}

func TestOUT2GatesIRQ(t *testing.T) {
	u, line, _ := newTestUART(t)
	out(u, regIIR, fcrEnable)
	out(u, regMCR, mcrDTR|mcrRTS) // no OUT2
	out(u, regIER, ierRDI)
	u.Receive(context.Background(), []byte("x"))
	if line.changes() != 0 {
		t.Fatal("line raised without OUT2")
	}
	if in(u, regIIR)&iirNoInt != 0 {
		t.Fatal("IIR shows no interrupt although one is pending")
	}
	out(u, regMCR, mcrDTR|mcrRTS|mcrOUT2)
	if !line.level() {
		t.Fatal("line low after OUT2 set with an interrupt pending")
	}
}

// TestTHRECycle follows the 8250 driver's transmit path: enabling THRI
// raises the interrupt, the handler's IIR read acknowledges it, writing
// THR raises it again, and stop_tx clearing THRI lowers the line.
func TestTHRECycle(t *testing.T) {
	u, line, o := newTestUART(t)
	linuxStartup(u)
	out(u, regIER, ierRDI|ierTHRI)
	if !line.level() {
		t.Fatal("line low after enabling THRI with THR empty")
	}
	if got := in(u, regIIR); got != iirFIFOEnable|iirTHRI {
		t.Fatalf("IIR = %#x, want THRE", got)
	}
	if line.level() {
		t.Fatal("line high after IIR read acknowledged THRE")
	}
	if got := in(u, regIIR); got&0x0f != iirNoInt {
		t.Fatalf("second IIR = %#x, want no interrupt", got)
	}
	out(u, regData, 'a')
	if !line.level() {
		t.Fatal("line low after THR emptied again")
	}
	out(u, regIER, ierRDI)
	if line.level() {
		t.Fatal("line high after THRI cleared")
	}
	if o.String() != "a" {
		t.Fatalf("output = %q", o.String())
	}
}

// TestTHREReasserts replays the UART_BUG_THRE probe of
// serial8250_do_startup: a real 16550 re-raises THRE when THRI is
// re-enabled, otherwise Linux falls back to a polling timer.
func TestTHREReasserts(t *testing.T) {
	u, _, _ := newTestUART(t)
	linuxStartup(u)
	out(u, regIER, ierTHRI)
	iir1 := in(u, regIIR)
	out(u, regIER, 0)
	out(u, regIER, ierTHRI)
	iir := in(u, regIIR)
	out(u, regIER, 0)
	if iir1&iirNoInt != 0 || iir&iirNoInt != 0 {
		t.Fatalf("IIR = %#x then %#x: THRE not (re)asserted", iir1, iir)
	}
}

func TestIIRPriority(t *testing.T) {
	u, _, _ := newTestUART(t)
	linuxStartup(u)
	out(u, regMCR, mcrLoop) // loopback: overrun and modem deltas on demand
	for range fifoSize + 1 {
		out(u, regData, 'z')
	}
	out(u, regMCR, mcrLoop|mcrRTS) // CTS delta
	out(u, regIER, ierRDI|ierTHRI|ierRLSI|ierMSI)
	want := []byte{iirRLSI, iirRDI, iirTHRI, iirMSI, iirNoInt}
	for i, w := range want {
		got := in(u, regIIR) & 0x0f
		if got != w {
			t.Fatalf("step %d: IIR = %#x, want %#x", i, got, w)
		}
		switch w {
		case iirRLSI:
			if in(u, regLSR)&lsrOE == 0 {
				t.Fatal("overrun not reported in LSR")
			}
		case iirRDI:
			for in(u, regLSR)&lsrDR != 0 {
				in(u, regData)
			}
		case iirMSI:
			if in(u, regMSR)&msrDCTS == 0 {
				t.Fatal("MSR lacks DCTS")
			}
		}
	}
}

func TestLoopback(t *testing.T) {
	u, line, o := newTestUART(t)
	linuxStartup(u)
	out(u, regIER, ierRDI)
	out(u, regMCR, mcrLoop|mcrDTR|mcrRTS|mcrOUT1|mcrOUT2)
	if got := in(u, regMSR) & 0xf0; got != 0xf0 {
		t.Fatalf("MSR lines = %#x, want 0xf0", got)
	}
	out(u, regMCR, mcrLoop)
	msr := in(u, regMSR)
	if msr&0xf0 != 0 || msr&msrDelta != msrDCTS|msrDDSR|msrTERI|msrDDCD {
		t.Fatalf("MSR after dropping all outputs = %#x", msr)
	}
	if in(u, regMSR)&msrDelta != 0 {
		t.Fatal("MSR deltas not cleared by read")
	}
	out(u, regData, 'L')
	if o.String() != "" {
		t.Fatalf("loopback byte leaked to output: %q", o.String())
	}
	if line.level() {
		t.Fatal("interrupt reached the line in loopback")
	}
	if got := in(u, regData); got != 'L' {
		t.Fatalf("looped byte = %q", got)
	}
	out(u, regMCR, mcrDTR|mcrRTS|mcrOUT2)
	if got := in(u, regMSR) & 0xf0; got != msrDCD|msrDSR|msrCTS {
		t.Fatalf("MSR lines outside loopback = %#x, want DCD|DSR|CTS", got)
	}
}

func TestDivisorLatch(t *testing.T) {
	u, _, o := newTestUART(t)
	out(u, regIER, ierRDI)
	out(u, regLCR, lcrDLAB|0x03)
	out(u, regData, 0x01) // 115200 baud
	out(u, regIER, 0x00)
	if in(u, regData) != 0x01 || in(u, regIER) != 0x00 {
		t.Fatal("divisor latch does not read back")
	}
	out(u, regLCR, 0x03)
	if got := in(u, regIER); got != ierRDI {
		t.Fatalf("IER = %#x after DLAB cleared, want %#x", got, ierRDI)
	}
	if o.String() != "" {
		t.Fatalf("DLL write transmitted %q", o.String())
	}
	out(u, regLCR, lcrDLAB)
	if in(u, regData) != 0x01 {
		t.Fatal("divisor lost")
	}
}

func TestScratch(t *testing.T) {
	u, _, _ := newTestUART(t)
	for _, v := range []byte{0x00, 0x55, 0xaa, 0xff} {
		out(u, regSCR, v)
		if got := in(u, regSCR); got != v {
			t.Fatalf("SCR = %#x, want %#x", got, v)
		}
	}
}

func TestReceiveBackPressure(t *testing.T) {
	u, _, _ := newTestUART(t)
	linuxStartup(u)
	msg := []byte("0123456789abcdefXYZ") // 19 bytes, FIFO holds 16
	done := make(chan int)
	go func() {
		n, _ := u.Receive(context.Background(), msg)
		done <- n
	}()
	// The FIFO fills and Receive waits for the guest.
	for in(u, regLSR)&lsrDR == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case n := <-done:
		t.Fatalf("Receive returned %d with the FIFO full", n)
	case <-time.After(20 * time.Millisecond):
	}
	var got []byte
	for len(got) < len(msg) {
		if in(u, regLSR)&lsrDR != 0 {
			got = append(got, in(u, regData))
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	if n := <-done; n != len(msg) {
		t.Fatalf("Receive delivered %d", n)
	}
	if string(got) != string(msg) {
		t.Fatalf("guest read %q", got)
	}
}

func TestReceiveFullFIFOHonoursContextAndClose(t *testing.T) {
	u, _, _ := newTestUART(t)
	// FIFO disabled: the 8250 holds a single byte.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	n, err := u.Receive(ctx, []byte("ab"))
	if n != 1 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %d, %v; want 1, deadline exceeded", n, err)
	}
	errc := make(chan error)
	go func() {
		_, err := u.Receive(context.Background(), []byte("c"))
		errc <- err
	}()
	u.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Receive after Close = %v", err)
	}
	u.Close() // idempotent
}

func TestOddAccesses(t *testing.T) {
	u, _, _ := newTestUART(t)
	wide := []byte{0xaa, 0xbb, 0xcc, 0xdd}
	u.Read(regSCR, wide)
	if wide[1] != 0 || wide[2] != 0 || wide[3] != 0 {
		t.Fatalf("wide read = %x", wide)
	}
	u.Write(Size+3, []byte{1})
	u.Read(Size+3, wide)
	u.Read(0, nil)
	u.Write(0, nil)
}
