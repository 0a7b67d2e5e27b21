package pcibus

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Offsets of type 0 configuration header registers (PCI Local Bus 3.0 §6.1).
const (
	RegVendorID       = 0x00
	RegDeviceID       = 0x02
	RegCommand        = 0x04
	RegStatus         = 0x06
	RegRevision       = 0x08
	RegClass          = 0x09 // prog-if, subclass, base class: 3 bytes
	RegCacheLineSize  = 0x0C
	RegLatencyTimer   = 0x0D
	RegHeaderType     = 0x0E
	RegBAR0           = 0x10
	RegSubsystemVenID = 0x2C
	RegSubsystemID    = 0x2E
	RegROMAddress     = 0x30
	RegCapPointer     = 0x34
	RegInterruptLine  = 0x3C
	RegInterruptPin   = 0x3D
)

// Command and status register bits.
const (
	CommandMemory       = 1 << 1
	CommandBusMaster    = 1 << 2
	CommandINTxDisable  = 1 << 10
	StatusCapabilities  = 1 << 4
	configSpaceSize     = 256
	firstCapability     = 0x40
	numBARs             = 6
	barMem64            = 0b100
	barPrefetchable     = 0b1000
	commandWritableMask = CommandMemory | CommandBusMaster | CommandINTxDisable
)

// Capability IDs.
const (
	CapVendor = 0x09
	CapMSIX   = 0x11
)

// Header is the identity of a function: what an OS matches drivers on.
type Header struct {
	VendorID, DeviceID uint16
	Revision           uint8
	// Class is base class << 16 | subclass << 8 | programming interface,
	// e.g. 0x020000 for an Ethernet controller.
	Class                          uint32
	SubsystemVendorID, SubsystemID uint16
	// InterruptPin is 0 for no legacy INTx pin (MSI-X only), 1-4 for INTA-D.
	InterruptPin uint8
}

// BAR describes a memory base address register. I/O BARs are not supported.
type BAR struct {
	// Size in bytes: a power of two, at least 16 (4096 or more keeps each
	// BAR on its own pages).
	Size uint64
	// Is64 makes a 64-bit BAR occupying this register and the next.
	Is64 bool
	// Prefetchable may only be set when reads have no side effects.
	Prefetchable bool
}

type barDef struct {
	BAR
	upper bool // this register is the upper half of the 64-bit BAR before it
}

type writeHook struct {
	start, end int
	fn         func()
}

// ConfigSpace is a function's 256-byte configuration space: register
// values, a write mask per bit so read-only fields stay read-only, the
// memory BARs (whose masks implement the sizing protocol: writing all ones
// reads back the size mask) and the capability list.
//
// A ConfigSpace is not safe for concurrent use. It is built by its device
// before the device is added to a Bus; from then on only the Bus touches it,
// under the Bus's configuration lock, and hooks registered with OnWrite run
// there too.
type ConfigSpace struct {
	data    [configSpaceSize]byte
	wmask   [configSpaceSize]byte
	bars    [numBARs]barDef
	capLast int // offset of the last capability, 0 when the list is empty
	capFree int // first free offset for the next capability
	hooks   []writeHook
}

// NewConfigSpace returns a type 0 header with identity h, memory decoding
// off and no BARs or capabilities.
func NewConfigSpace(h Header) *ConfigSpace {
	c := &ConfigSpace{capFree: firstCapability}
	c.put16(RegVendorID, h.VendorID)
	c.put16(RegDeviceID, h.DeviceID)
	c.data[RegRevision] = h.Revision
	c.data[RegClass] = byte(h.Class)
	c.data[RegClass+1] = byte(h.Class >> 8)
	c.data[RegClass+2] = byte(h.Class >> 16)
	c.put16(RegSubsystemVenID, h.SubsystemVendorID)
	c.put16(RegSubsystemID, h.SubsystemID)
	c.data[RegInterruptPin] = h.InterruptPin
	binary.LittleEndian.PutUint16(c.wmask[RegCommand:], commandWritableMask)
	c.wmask[RegCacheLineSize] = 0xFF
	c.wmask[RegLatencyTimer] = 0xFF
	c.wmask[RegInterruptLine] = 0xFF
	return c
}

// AddBAR declares memory BAR index. A 64-bit BAR also takes index+1.
func (c *ConfigSpace) AddBAR(index int, b BAR) error {
	n := 1
	if b.Is64 {
		n = 2
	}
	if index < 0 || index+n > numBARs {
		return fmt.Errorf("add BAR %d: index out of range", index)
	}
	if b.Size < 16 || bits.OnesCount64(b.Size) != 1 || (!b.Is64 && b.Size > 1<<31) {
		return fmt.Errorf("add BAR %d: size %#x is not a power of two in range", index, b.Size)
	}
	for i := index; i < index+n; i++ {
		if c.bars[i].Size != 0 {
			return fmt.Errorf("add BAR %d: register %d already in use", index, i)
		}
	}
	c.bars[index] = barDef{BAR: b}
	reg := RegBAR0 + 4*index
	flags := uint32(0)
	if b.Is64 {
		flags |= barMem64
	}
	if b.Prefetchable {
		flags |= barPrefetchable
	}
	mask := ^(b.Size - 1)
	binary.LittleEndian.PutUint32(c.data[reg:], flags)
	binary.LittleEndian.PutUint32(c.wmask[reg:], uint32(mask)&^0xF)
	if b.Is64 {
		c.bars[index+1] = barDef{BAR: b, upper: true}
		binary.LittleEndian.PutUint32(c.wmask[reg+4:], uint32(mask>>32))
	}
	return nil
}

// AddCapability appends a capability with the given ID to the list. body
// is everything after the ID and next-pointer bytes; writable, if not nil,
// is a mask over body of the bits the guest may change. It returns the
// capability's offset in configuration space.
func (c *ConfigSpace) AddCapability(id uint8, body, writable []byte) (int, error) {
	if writable != nil && len(writable) != len(body) {
		return 0, fmt.Errorf("add capability %#x: mask length %d, body length %d", id, len(writable), len(body))
	}
	off := c.capFree
	if off+2+len(body) > configSpaceSize {
		return 0, fmt.Errorf("add capability %#x: configuration space full", id)
	}
	c.data[off] = id
	c.data[off+1] = 0
	copy(c.data[off+2:], body)
	if writable != nil {
		copy(c.wmask[off+2:], writable)
	}
	if c.capLast == 0 {
		c.data[RegCapPointer] = byte(off)
		c.put16(RegStatus, c.get16(RegStatus)|StatusCapabilities)
	} else {
		c.data[c.capLast+1] = byte(off)
	}
	c.capLast = off
	c.capFree = (off + 2 + len(body) + 3) &^ 3
	return off, nil
}

// OnWrite registers fn to run after any guest write that touches
// [offset, offset+length). fn runs under the Bus's configuration lock.
func (c *ConfigSpace) OnWrite(offset, length int, fn func()) {
	c.hooks = append(c.hooks, writeHook{offset, offset + length, fn})
}

// Read fills data from offset reg. Bytes past the end read as zero, so any
// width and offset the guest chooses is served.
func (c *ConfigSpace) Read(reg int, data []byte) {
	for i := range data {
		if r := reg + i; r >= 0 && r < configSpaceSize {
			data[i] = c.data[r]
		} else {
			data[i] = 0
		}
	}
}

// Write applies a guest write at offset reg: only writable bits change.
func (c *ConfigSpace) Write(reg int, data []byte) {
	if reg < 0 || reg >= configSpaceSize {
		return
	}
	end := min(reg+len(data), configSpaceSize)
	for r := reg; r < end; r++ {
		m := c.wmask[r]
		c.data[r] = c.data[r]&^m | data[r-reg]&m
	}
	for _, h := range c.hooks {
		if reg < h.end && end > h.start {
			h.fn()
		}
	}
}

// Uint16 reads a little-endian 16-bit register, for devices and hooks.
func (c *ConfigSpace) Uint16(off int) uint16 { return c.get16(off) }

// Uint32 reads a little-endian 32-bit register.
func (c *ConfigSpace) Uint32(off int) uint32 {
	if off < 0 || off+4 > configSpaceSize {
		return 0
	}
	return binary.LittleEndian.Uint32(c.data[off:])
}

// Command is the command register.
func (c *ConfigSpace) Command() uint16 { return c.get16(RegCommand) }

func (c *ConfigSpace) get16(off int) uint16 {
	if off < 0 || off+2 > configSpaceSize {
		return 0
	}
	return binary.LittleEndian.Uint16(c.data[off:])
}

func (c *ConfigSpace) put16(off int, v uint16) { binary.LittleEndian.PutUint16(c.data[off:], v) }

func (c *ConfigSpace) setCommand(v uint16) { c.put16(RegCommand, v) }

// bar returns BAR i's definition, or ok false when register i starts no BAR.
func (c *ConfigSpace) bar(i int) (BAR, bool) {
	d := c.bars[i]
	return d.BAR, d.Size != 0 && !d.upper
}

// barAddress is the address BAR i currently holds (flag bits cleared).
func (c *ConfigSpace) barAddress(i int) uint64 {
	reg := RegBAR0 + 4*i
	addr := uint64(binary.LittleEndian.Uint32(c.data[reg:]) &^ 0xF)
	if c.bars[i].Is64 {
		addr |= uint64(binary.LittleEndian.Uint32(c.data[reg+4:])) << 32
	}
	return addr
}

// setBARAddress places BAR i at addr, as firmware would.
func (c *ConfigSpace) setBARAddress(i int, addr uint64) {
	reg := RegBAR0 + 4*i
	lo := binary.LittleEndian.Uint32(c.data[reg:])&0xF | uint32(addr)&^0xF
	binary.LittleEndian.PutUint32(c.data[reg:], lo)
	if c.bars[i].Is64 {
		binary.LittleEndian.PutUint32(c.data[reg+4:], uint32(addr>>32))
	}
}
