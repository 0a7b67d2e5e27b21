// Package i8042 emulates the PC keyboard controller just far enough for a
// Linux guest: the status and data ports answer the driver's probes
// (controller self-test, CTR read/write, interface tests) and command 0xFE
// — the pulse of the CPU reset line used by `reboot=k` — asks the VMM to
// reset the machine. No keyboard or mouse is attached: bytes for them are
// ignored and the controller never raises IRQ 1 or 12.
//
// Boot Linux with i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd to
// skip probing for devices that are not there.
package i8042

import (
	"sync"

	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

// Port addresses of the controller.
const (
	DataPort    = 0x60 // read: output buffer; write: data for the pending command or the keyboard
	CommandPort = 0x64 // read: status register; write: controller command
)

// Status register bits.
const (
	statusOBF     = 0x01 // output buffer full
	statusIBF     = 0x02 // input buffer full; never set: commands complete at once
	statusSYS     = 0x04 // system flag: self-test passed
	statusCMD     = 0x08 // last write was to the command port
	statusUnlock  = 0x10 // keyboard not inhibited by the key lock
	statusAUXData = 0x20 // output buffer holds aux (mouse) data; never set here
)

// Controller configuration byte (CTR) bits.
const (
	ctrKbdInt = 0x01
	ctrSYS    = 0x04
	ctrKbdDis = 0x10
	ctrAuxDis = 0x20
	ctrXlate  = 0x40
)

// Controller commands.
const (
	cmdReadCTR     = 0x20
	cmdWriteCTR    = 0x60
	cmdAuxDisable  = 0xa7
	cmdAuxEnable   = 0xa8
	cmdAuxTest     = 0xa9
	cmdSelfTest    = 0xaa
	cmdKbdTest     = 0xab
	cmdKbdDisable  = 0xad
	cmdKbdEnable   = 0xae
	cmdReadOutput  = 0xd0
	cmdWriteOutput = 0xd1
	cmdKbdLoop     = 0xd2
	cmdAuxLoop     = 0xd3
	cmdAuxSend     = 0xd4
	cmdPulseReset  = 0xfe
)

// Controller is the i8042. Create it with New and register it with
// Register; it is safe for concurrent use.
type Controller struct {
	reset func()

	mu      sync.Mutex
	ctr     byte
	status  byte // CMD flag only; the rest is derived
	out     byte // output buffer
	outFull bool
	pending byte // command waiting for its data byte, 0 if none
	output  byte // output port (bit 0: CPU reset line, active low; bit 1: A20)
}

// New returns a controller that calls reset when the guest asks for a CPU
// reset (command 0xFE, or the output port written with bit 0 clear). reset
// runs on the vCPU thread that made the access: it must only signal the
// VMM, not wait for the VM to stop. reset may be nil.
func New(reset func()) *Controller {
	if reset == nil {
		reset = func() {}
	}
	return &Controller{
		reset:  reset,
		ctr:    ctrKbdInt | ctrSYS | ctrXlate | ctrAuxDis,
		output: 0x03, // reset line inactive, A20 enabled
	}
}

// Register puts the data and command ports on the port-I/O bus.
func (c *Controller) Register(pio *bus.Bus) error {
	if err := pio.Register(DataPort, 1, port{c, false}); err != nil {
		return err
	}
	if err := pio.Register(CommandPort, 1, port{c, true}); err != nil {
		pio.Unregister(DataPort)
		return err
	}
	return nil
}

// port is the bus.Device for one of the two ports.
type port struct {
	c       *Controller
	command bool
}

func (p port) Read(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	clear(data)
	if p.command {
		data[0] = p.c.Status()
	} else {
		data[0] = p.c.ReadData()
	}
}

func (p port) Write(offset uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	if p.command {
		p.c.WriteCommand(data[0])
	} else {
		p.c.WriteData(data[0])
	}
}

// Status returns the status register (port 0x64 read). The input buffer
// is always empty: commands complete at once.
func (c *Controller) Status() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status | statusUnlock
	if c.ctr&ctrSYS != 0 {
		s |= statusSYS
	}
	if c.outFull {
		s |= statusOBF
	}
	return s
}

// ReadData returns the output buffer (port 0x60 read) and empties it.
func (c *Controller) ReadData() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outFull = false
	return c.out
}

// WriteCommand executes a controller command (port 0x64 write).
func (c *Controller) WriteCommand(cmd byte) {
	c.mu.Lock()
	c.status |= statusCMD
	c.pending = 0
	doReset := false
	switch cmd {
	case cmdReadCTR:
		c.push(c.ctr)
	case cmdWriteCTR, cmdWriteOutput, cmdKbdLoop, cmdAuxLoop, cmdAuxSend:
		c.pending = cmd
	case cmdAuxDisable:
		c.ctr |= ctrAuxDis
	case cmdAuxEnable:
		c.ctr &^= ctrAuxDis
	case cmdAuxTest:
		c.push(0x01) // clock line stuck low: no aux port here
	case cmdSelfTest:
		c.ctr |= ctrSYS
		c.push(0x55)
	case cmdKbdTest:
		c.push(0x00)
	case cmdKbdDisable:
		c.ctr |= ctrKbdDis
	case cmdKbdEnable:
		c.ctr &^= ctrKbdDis
	case cmdReadOutput:
		c.push(c.output)
	default:
		// 0xF0-0xFF pulse output port bits whose mask bit is 0; bit 0 is
		// the CPU reset line (0xFE is the classic reset).
		if cmd >= 0xf0 && cmd&0x01 == 0 {
			doReset = true
		}
	}
	c.mu.Unlock()
	if doReset {
		c.reset()
	}
}

// WriteData takes a data byte (port 0x60 write): the parameter of a
// pending command, or a byte for the keyboard, which is not there.
func (c *Controller) WriteData(v byte) {
	c.mu.Lock()
	c.status &^= statusCMD
	cmd := c.pending
	c.pending = 0
	doReset := false
	switch cmd {
	case cmdWriteCTR:
		c.ctr = v
	case cmdWriteOutput:
		c.output = v
		doReset = v&0x01 == 0
	case cmdKbdLoop:
		c.push(v)
	case cmdAuxLoop:
		// Echo without the aux flag: Linux's aux probe fails at once
		// instead of waiting for a timeout.
		c.push(v)
	}
	c.mu.Unlock()
	if doReset {
		c.reset()
	}
}

// push places a byte in the output buffer, replacing any unread one.
func (c *Controller) push(v byte) {
	c.out = v
	c.outFull = true
}
