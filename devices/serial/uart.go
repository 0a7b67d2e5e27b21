// Package serial emulates the 16550A UART that the Linux 8250 driver and the
// kernel's early console drive on the PC COM ports: the divisor latch, a
// 16-byte receive FIFO, the THRE/RX/line-status/modem-status interrupts with
// their IIR priorities, loopback mode mirrored in MSR, the scratch register,
// and the PC's OUT2 gating of the interrupt line.
//
// Transmission is instantaneous: a byte written to THR goes straight to the
// output writer and THR/TEMT read as empty again. Input arrives through
// Receive, which blocks while the guest has not drained the FIFO.
package serial

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
)

// Standard PC COM1 resources.
const (
	COM1Base = 0x3f8
	COM1IRQ  = 4
	// Size is the number of ports a UART occupies.
	Size = 8
)

// ErrClosed is returned by Receive once the UART is closed.
var ErrClosed = errors.New("serial: uart closed")

// InterruptLine sets the level of an interrupt controller input
// (KVM_IRQ_LINE on the in-kernel PIC/IOAPIC); *vmm.VM satisfies it.
type InterruptLine interface {
	SetIRQLine(irq uint32, level bool) error
}

// Config describes where a UART sends its output and interrupts.
type Config struct {
	// IRQ is the interrupt controller input (COM1IRQ for COM1).
	IRQ uint32
	// Line receives the interrupt level; nil leaves the UART usable only
	// by polling drivers (the kernel's console).
	Line InterruptLine
	// Out receives transmitted bytes; nil discards them. Writes happen on
	// the vCPU thread: Out should not block for long.
	Out io.Writer
	// Logger reports output and interrupt errors; nil means slog.Default().
	Logger *slog.Logger
}

// UART is one 16550A. It implements bus.Device over Size ports and is safe
// for concurrent use by vCPUs and the input producer.
type UART struct {
	irq  uint32
	line InterruptLine
	out  io.Writer
	log  *slog.Logger

	mu         sync.Mutex
	ier        byte
	fcr        byte // FIFO enable and trigger bits as last written
	lcr        byte
	mcr        byte
	lsr        byte // error bits only; DR, THRE, TEMT are derived
	msr        byte // delta bits only; line states are derived
	scr        byte
	dll, dlm   byte
	rx         []byte // receive FIFO, oldest first
	txBuf      [1]byte
	thrPending bool // THRE interrupt latched (cleared by IIR read or THR write)
	level      bool // last level given to line
	closed     bool
	outErr     bool // an output error has been logged
	irqErr     bool // an interrupt error has been logged

	space chan struct{} // receive FIFO space freed (capacity 1)
	done  chan struct{} // closed by Close
}

// New returns a UART in its reset state: divisor 12 (9600 baud), 8N1 not
// yet programmed, FIFO disabled, interrupts off, line low.
func New(cfg Config) *UART {
	u := &UART{
		irq:   cfg.IRQ,
		line:  cfg.Line,
		out:   cfg.Out,
		log:   cfg.Logger,
		dll:   0x0c,
		space: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	if u.out == nil {
		u.out = io.Discard
	}
	if u.log == nil {
		u.log = slog.Default()
	}
	u.log = u.log.With("device", "uart", "irq", cfg.IRQ)
	return u
}

// Close wakes any Receive with ErrClosed; later input is refused. The
// registers keep working so that a guest still running is not disturbed.
// Close is idempotent.
func (u *UART) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.closed {
		u.closed = true
		close(u.done)
	}
	return nil
}

// Receive delivers bytes from the outside world to the guest. It blocks
// while the receive FIFO is full (the guest has not read it), so a slow
// guest pushes back on the producer instead of losing input; it returns
// early with the count delivered when ctx ends or the UART is closed.
// While the UART is in loopback mode its serial input is disconnected and
// Receive waits.
func (u *UART) Receive(ctx context.Context, p []byte) (int, error) {
	n := 0
	for {
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			return n, ErrClosed
		}
		if u.mcr&mcrLoop == 0 {
			k := min(u.rxSpace(), len(p)-n)
			if k > 0 {
				u.rx = append(u.rx, p[n:n+k]...)
				n += k
				u.updateIRQ()
			}
		}
		u.mu.Unlock()
		if n == len(p) {
			return n, nil
		}
		select {
		case <-u.space:
		case <-ctx.Done():
			return n, ctx.Err()
		case <-u.done:
		}
	}
}

// Read implements bus.Device. Only the first byte of a wider access reaches
// the register; the rest read as zero.
func (u *UART) Read(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	clear(data)
	if offset >= Size {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	data[0] = u.readReg(offset)
	u.updateIRQ()
}

// Write implements bus.Device. Only the first byte of a wider access
// reaches the register.
func (u *UART) Write(offset uint64, data []byte) {
	if len(data) == 0 || offset >= Size {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.writeReg(offset, data[0])
	u.updateIRQ()
}

func (u *UART) dlab() bool { return u.lcr&lcrDLAB != 0 }

func (u *UART) fifoEnabled() bool { return u.fcr&fcrEnable != 0 }

// rxSpace is how many more bytes the receive FIFO (or the 8250's single
// holding register when the FIFO is off) accepts.
func (u *UART) rxSpace() int {
	if u.fifoEnabled() {
		return fifoSize - len(u.rx)
	}
	return max(0, 1-len(u.rx))
}

func (u *UART) readReg(offset uint64) byte {
	switch offset {
	case regData:
		if u.dlab() {
			return u.dll
		}
		return u.popRX()
	case regIER:
		if u.dlab() {
			return u.dlm
		}
		return u.ier
	case regIIR:
		iir := u.iir()
		if iir&0x0f == iirTHRI {
			// Reading IIR acknowledges a THRE interrupt.
			u.thrPending = false
		}
		return iir
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		v := u.lsrValue()
		u.lsr = 0 // error bits clear on read
		return v
	case regMSR:
		v := u.msrLines() | u.msr
		u.msr = 0 // deltas clear on read
		return v
	default: // regSCR
		return u.scr
	}
}

func (u *UART) writeReg(offset uint64, v byte) {
	switch offset {
	case regData:
		if u.dlab() {
			u.dll = v
			return
		}
		u.transmit(v)
	case regIER:
		if u.dlab() {
			u.dlm = v
			return
		}
		old := u.ier
		u.ier = v & ierMask
		// Enabling THRI while THR is empty raises the THRE interrupt, as
		// on real 16550s (Linux's UART_BUG_THRE/TXEN probes rely on it).
		if old&ierTHRI == 0 && u.ier&ierTHRI != 0 {
			u.thrPending = true
		}
	case regIIR:
		u.writeFCR(v)
	case regLCR:
		u.lcr = v
	case regMCR:
		u.writeMCR(v & mcrMask)
	case regLSR:
		// Read-only on the 16550A (factory test only); ignore.
	case regMSR:
		// Read-only; ignore.
	default: // regSCR
		u.scr = v
	}
}

// transmit sends one byte written to THR. THR empties at once, so the THRE
// interrupt is latched again right away.
func (u *UART) transmit(v byte) {
	u.thrPending = false
	if u.mcr&mcrLoop != 0 {
		// Loopback: the transmitter feeds the receiver.
		if u.rxSpace() > 0 {
			u.rx = append(u.rx, v)
		} else {
			u.lsr |= lsrOE
		}
	} else {
		u.txBuf[0] = v // io.Writer must not retain it; no allocation per byte
		if _, err := u.out.Write(u.txBuf[:]); err != nil && !u.outErr {
			u.outErr = true
			u.log.Warn("serial output failed; further errors not logged", "err", err)
		}
	}
	u.thrPending = true
}

func (u *UART) writeFCR(v byte) {
	if v&fcrEnable == 0 {
		// Disabling (or leaving disabled) the FIFO clears it; the other
		// bits are not programmed while bit 0 is clear.
		if u.fifoEnabled() {
			u.clearRX()
		}
		u.fcr = 0
		return
	}
	if !u.fifoEnabled() || v&fcrClearRX != 0 {
		u.clearRX()
	}
	u.fcr = v & (fcrEnable | fcrTrigMask)
}

func (u *UART) writeMCR(v byte) {
	oldLines := u.msrLines()
	wasLoop := u.mcr&mcrLoop != 0
	u.mcr = v
	newLines := u.msrLines()
	changed := oldLines ^ newLines
	if changed&msrCTS != 0 {
		u.msr |= msrDCTS
	}
	if changed&msrDSR != 0 {
		u.msr |= msrDDSR
	}
	if changed&msrDCD != 0 {
		u.msr |= msrDDCD
	}
	if oldLines&msrRI != 0 && newLines&msrRI == 0 {
		u.msr |= msrTERI
	}
	if wasLoop && v&mcrLoop == 0 {
		u.signalSpace() // external input is connected again
	}
}

func (u *UART) clearRX() {
	u.rx = u.rx[:0]
	u.signalSpace()
}

func (u *UART) popRX() byte {
	if len(u.rx) == 0 {
		return 0
	}
	v := u.rx[0]
	u.rx = append(u.rx[:0], u.rx[1:]...)
	u.signalSpace()
	return v
}

func (u *UART) signalSpace() {
	select {
	case u.space <- struct{}{}:
	default:
	}
}

func (u *UART) lsrValue() byte {
	v := u.lsr | lsrTHRE | lsrTEMT
	if len(u.rx) > 0 {
		v |= lsrDR
	}
	return v
}

// msrLines is the high nibble of MSR: in loopback the modem control
// outputs wired back (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD); otherwise a
// peer that is always present and ready, so the console never waits on CTS.
func (u *UART) msrLines() byte {
	if u.mcr&mcrLoop == 0 {
		return msrDCD | msrDSR | msrCTS
	}
	var v byte
	if u.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if u.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if u.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// iir is the identification of the highest-priority pending interrupt.
func (u *UART) iir() byte {
	var v byte = iirNoInt
	switch {
	case u.ier&ierRLSI != 0 && u.lsr&lsrErrs != 0:
		v = iirRLSI
	case u.ier&ierRDI != 0 && len(u.rx) > 0:
		v = iirRDI
	case u.ier&ierTHRI != 0 && u.thrPending:
		v = iirTHRI
	case u.ier&ierMSI != 0 && u.msr&msrDelta != 0:
		v = iirMSI
	}
	if u.fifoEnabled() {
		v |= iirFIFOEnable
	}
	return v
}

// updateIRQ drives the interrupt line after a state change. On a PC the
// UART's interrupt output reaches the PIC only through OUT2, and not at
// all in loopback mode. The line is touched only when its level changes.
func (u *UART) updateIRQ() {
	level := u.iir()&iirNoInt == 0 && u.mcr&mcrOUT2 != 0 && u.mcr&mcrLoop == 0
	if level == u.level || u.line == nil {
		u.level = level
		return
	}
	u.level = level
	if err := u.line.SetIRQLine(u.irq, level); err != nil && !u.irqErr {
		u.irqErr = true
		u.log.Warn("set serial interrupt line failed; further errors not logged", "level", level, "err", err)
	}
}
