package serial

// Register offsets from the UART's base port (COM1 is 0x3f8). With LCR.DLAB
// set, offsets 0 and 1 address the divisor latch instead of RBR/THR and IER.
const (
	regData = 0 // RBR (read), THR (write), DLL (DLAB)
	regIER  = 1 // IER, DLM (DLAB)
	regIIR  = 2 // IIR (read), FCR (write)
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// IER bits.
const (
	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // transmitter holding register empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0f // the 16550A has no bits above these; Linux probes that
)

// IIR values (bits 0-3) and the FIFO-enabled flag (bits 6-7).
const (
	iirNoInt      = 0x01
	iirMSI        = 0x00
	iirTHRI       = 0x02
	iirRDI        = 0x04
	iirRLSI       = 0x06
	iirFIFOEnable = 0xc0
)

// FCR bits.
const (
	fcrEnable   = 0x01
	fcrClearRX  = 0x02
	fcrClearTX  = 0x04
	fcrTrigMask = 0xc0
)

// LCR bits.
const lcrDLAB = 0x80

// MCR bits.
const (
	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f
)

// LSR bits.
const (
	lsrDR   = 0x01 // data ready
	lsrOE   = 0x02 // overrun error
	lsrBI   = 0x10 // break interrupt
	lsrTHRE = 0x20 // transmitter holding register empty
	lsrTEMT = 0x40 // transmitter empty
	lsrErrs = 0x1e // OE, PE, FE, BI: the receiver line status interrupt sources
)

// MSR bits: deltas in the low nibble, line states in the high nibble.
const (
	msrDCTS  = 0x01
	msrDDSR  = 0x02
	msrTERI  = 0x04
	msrDDCD  = 0x08
	msrCTS   = 0x10
	msrDSR   = 0x20
	msrRI    = 0x40
	msrDCD   = 0x80
	msrDelta = 0x0f
)

// fifoSize is the 16550A's receive FIFO depth. With the FIFO disabled the
// UART behaves as an 8250 with a one-byte receive buffer.
const fifoSize = 16
