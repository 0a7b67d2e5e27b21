package pcibus

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
)

// MSI-X message control bits and table layout (PCI 3.0 §6.8.2).
const (
	MSIXEnable       = 1 << 15
	MSIXFunctionMask = 1 << 14
	MSIXEntrySize    = 16
	MSIXMaxVectors   = 2048
	msixCtrlMasked   = 1 // vector control: per-entry mask bit
	msixCapBodySize  = 10
)

// MSIMessage is what a device writes to raise one MSI: the address and data
// that KVM turns into an interrupt (KVM_SIGNAL_MSI or a GSI route).
type MSIMessage struct {
	Addr uint64
	Data uint32
}

// MSISender delivers one MSI. *vmm.VM satisfies it (KVM_SIGNAL_MSI).
type MSISender interface {
	SignalMSI(addr uint64, data uint32) error
}

// MSIXListener is told about changes the driver makes to MSI-X state. The
// calls run with the MSIX's lock held, in the middle of the guest access
// that caused them.
type MSIXListener interface {
	// MSIXEnabled reports that the driver turned MSI-X on or off. The
	// MSIXMasked calls that follow from it come after.
	MSIXEnabled(on bool)
	// MSIXMasked reports that vector v can no longer (masked) or can again
	// deliver interrupts. Masked is the effective state: MSI-X disabled,
	// the function mask or the entry's mask bit. On unmask, a pending
	// interrupt is delivered by the MSIX after this call returns, so the
	// listener can first move its own pending state into the PBA.
	MSIXMasked(v int, masked bool)
	// MSIXUpdated reports that the driver changed the message of vector v
	// while it was unmasked.
	MSIXUpdated(v int)
}

// MSIXConfig places an MSI-X capability.
type MSIXConfig struct {
	// Vectors is the table size, 1 to 2048.
	Vectors int
	// TableBAR/TableOffset and PBABAR/PBAOffset locate the table and the
	// pending-bit array; offsets must be 8-byte aligned. The device serves
	// them from its BAR handlers with ReadTable/WriteTable/ReadPBA.
	TableBAR    int
	TableOffset uint32
	PBABAR      int
	PBAOffset   uint32
	// Lock is the owner's lock. The owner holds it around every call into
	// the MSIX; the MSIX takes it itself when the guest writes the message
	// control word through configuration space.
	Lock     sync.Locker
	Sender   MSISender
	Listener MSIXListener
	// Logger receives delivery failures that no guest access can report;
	// nil means slog.Default().
	Logger *slog.Logger
}

// MSIX is an MSI-X capability with its vector table and PBA. It is guarded
// by the owner's lock (MSIXConfig.Lock).
type MSIX struct {
	cfg     MSIXConfig
	cs      *ConfigSpace
	capOff  int
	table   []byte
	pba     []uint64
	enabled bool
	fnMask  bool
}

// AddMSIX appends an MSI-X capability to cs.
func AddMSIX(cs *ConfigSpace, cfg MSIXConfig) (*MSIX, error) {
	switch {
	case cfg.Vectors < 1 || cfg.Vectors > MSIXMaxVectors:
		return nil, fmt.Errorf("add MSI-X: %d vectors, want 1 to %d", cfg.Vectors, MSIXMaxVectors)
	case cfg.TableBAR < 0 || cfg.TableBAR >= numBARs || cfg.PBABAR < 0 || cfg.PBABAR >= numBARs:
		return nil, fmt.Errorf("add MSI-X: BAR index out of range")
	case cfg.TableOffset%8 != 0 || cfg.PBAOffset%8 != 0:
		return nil, fmt.Errorf("add MSI-X: table and PBA offsets must be 8-byte aligned")
	case cfg.Lock == nil || cfg.Sender == nil || cfg.Listener == nil:
		return nil, fmt.Errorf("add MSI-X: lock, sender and listener are required")
	}
	body := make([]byte, msixCapBodySize)
	binary.LittleEndian.PutUint16(body[0:], uint16(cfg.Vectors-1))
	binary.LittleEndian.PutUint32(body[2:], cfg.TableOffset|uint32(cfg.TableBAR))
	binary.LittleEndian.PutUint32(body[6:], cfg.PBAOffset|uint32(cfg.PBABAR))
	mask := make([]byte, msixCapBodySize)
	binary.LittleEndian.PutUint16(mask[0:], MSIXEnable|MSIXFunctionMask)
	off, err := cs.AddCapability(CapMSIX, body, mask)
	if err != nil {
		return nil, fmt.Errorf("add MSI-X: %w", err)
	}
	m := &MSIX{
		cfg:    cfg,
		cs:     cs,
		capOff: off,
		table:  make([]byte, cfg.Vectors*MSIXEntrySize),
		pba:    make([]uint64, (cfg.Vectors+63)/64),
	}
	for v := range cfg.Vectors {
		m.table[v*MSIXEntrySize+12] = msixCtrlMasked
	}
	if m.cfg.Logger == nil {
		m.cfg.Logger = slog.Default()
	}
	cs.OnWrite(off+2, 2, m.controlWritten)
	return m, nil
}

// Vectors is the table size.
func (m *MSIX) Vectors() int { return m.cfg.Vectors }

// TableSize and PBASize are the byte lengths of the table and the PBA.
func (m *MSIX) TableSize() uint64 { return uint64(len(m.table)) }

// PBASize is the byte length of the pending-bit array.
func (m *MSIX) PBASize() uint64 { return uint64(8 * len(m.pba)) }

// Enabled reports whether the driver turned MSI-X on.
func (m *MSIX) Enabled() bool { return m.enabled }

// Masked reports whether vector v cannot deliver now: MSI-X off, function
// masked or entry masked. Out-of-range vectors are masked.
func (m *MSIX) Masked(v int) bool {
	if v < 0 || v >= m.cfg.Vectors {
		return true
	}
	return !m.enabled || m.fnMask || m.entryMasked(v)
}

// Message is vector v's address and data as the driver programmed them.
func (m *MSIX) Message(v int) MSIMessage {
	if v < 0 || v >= m.cfg.Vectors {
		return MSIMessage{}
	}
	e := m.table[v*MSIXEntrySize:]
	return MSIMessage{
		Addr: uint64(binary.LittleEndian.Uint32(e[0:])) | uint64(binary.LittleEndian.Uint32(e[4:]))<<32,
		Data: binary.LittleEndian.Uint32(e[8:]),
	}
}

// Pending reports vector v's PBA bit.
func (m *MSIX) Pending(v int) bool {
	if v < 0 || v >= m.cfg.Vectors {
		return false
	}
	return m.pba[v/64]&(1<<(v%64)) != 0
}

// SetPending records an interrupt on masked vector v, delivered on unmask.
func (m *MSIX) SetPending(v int) {
	if v >= 0 && v < m.cfg.Vectors {
		m.pba[v/64] |= 1 << (v % 64)
	}
}

func (m *MSIX) clearPending(v int) { m.pba[v/64] &^= 1 << (v % 64) }

// Notify raises vector v: an MSI now if it is unmasked, else its pending
// bit. With MSI-X disabled there is nowhere to deliver (this bus has no
// INTx), so the interrupt is dropped.
func (m *MSIX) Notify(v int) error {
	switch {
	case v < 0 || v >= m.cfg.Vectors:
		return fmt.Errorf("MSI-X notify: vector %d out of range (table has %d)", v, m.cfg.Vectors)
	case !m.enabled:
		return nil
	case m.Masked(v):
		m.SetPending(v)
		return nil
	}
	return m.send(v)
}

func (m *MSIX) send(v int) error {
	msg := m.Message(v)
	if err := m.cfg.Sender.SignalMSI(msg.Addr, msg.Data); err != nil {
		return fmt.Errorf("signal MSI-X vector %d: %w", v, err)
	}
	return nil
}

func (m *MSIX) entryMasked(v int) bool { return m.table[v*MSIXEntrySize+12]&msixCtrlMasked != 0 }

// ReadTable serves a guest read at offset inside the vector table.
func (m *MSIX) ReadTable(off uint64, data []byte) {
	for i := range data {
		if o := off + uint64(i); o >= off && o < uint64(len(m.table)) {
			data[i] = m.table[o]
		} else {
			data[i] = 0
		}
	}
}

// tableWritable is, per byte of an entry, the bits the driver may change:
// the address is dword aligned, vector control has only the mask bit.
var tableWritable = [MSIXEntrySize]byte{0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	0xFF, 0xFF, 0xFF, 0xFF, msixCtrlMasked, 0, 0, 0}

// WriteTable serves a guest write at offset inside the vector table and
// reports mask and message changes to the listener.
func (m *MSIX) WriteTable(off uint64, data []byte) {
	if off >= uint64(len(m.table)) {
		return
	}
	first := int(off / MSIXEntrySize)
	last := int(min(off+uint64(len(data))-1, uint64(len(m.table))-1) / MSIXEntrySize)
	type before struct {
		masked bool
		msg    MSIMessage
	}
	was := make([]before, 0, last-first+1)
	for v := first; v <= last; v++ {
		was = append(was, before{m.Masked(v), m.Message(v)})
	}
	for i, b := range data {
		o := off + uint64(i)
		if o >= uint64(len(m.table)) {
			break
		}
		w := tableWritable[o%MSIXEntrySize]
		m.table[o] = m.table[o]&^w | b&w
	}
	for i, b := range was {
		v := first + i
		masked := m.Masked(v)
		switch {
		case masked != b.masked:
			m.maskChanged(v, masked)
		case !masked && m.Message(v) != b.msg:
			m.cfg.Listener.MSIXUpdated(v)
		}
	}
}

// ReadPBA serves a guest read at offset inside the PBA. The PBA is read-only.
func (m *MSIX) ReadPBA(off uint64, data []byte) {
	for i := range data {
		o := off + uint64(i)
		if o < off || o >= m.PBASize() {
			data[i] = 0
			continue
		}
		data[i] = byte(m.pba[o/8] >> (8 * (o % 8)))
	}
}

func (m *MSIX) maskChanged(v int, masked bool) {
	m.cfg.Listener.MSIXMasked(v, masked)
	if !masked && m.Pending(v) {
		m.clearPending(v)
		// A failed delivery cannot be reported to the guest; keeping the
		// bit set would only repeat the failure.
		if err := m.send(v); err != nil {
			m.cfg.Logger.Warn("deliver pending MSI-X interrupt on unmask", "err", err)
		}
	}
}

// controlWritten runs after a configuration write to message control.
func (m *MSIX) controlWritten() {
	m.cfg.Lock.Lock()
	defer m.cfg.Lock.Unlock()
	ctrl := m.cs.Uint16(m.capOff + 2)
	enabled, fnMask := ctrl&MSIXEnable != 0, ctrl&MSIXFunctionMask != 0
	if enabled == m.enabled && fnMask == m.fnMask {
		return
	}
	was := make([]bool, m.cfg.Vectors)
	for v := range was {
		was[v] = m.Masked(v)
	}
	enableChanged := enabled != m.enabled
	m.enabled, m.fnMask = enabled, fnMask
	if enableChanged {
		m.cfg.Listener.MSIXEnabled(enabled)
	}
	for v, w := range was {
		if masked := m.Masked(v); masked != w {
			m.maskChanged(v, masked)
		}
	}
}
