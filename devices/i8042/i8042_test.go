package i8042

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

// kbc drives a controller through the port-I/O bus as the guest would.
type kbc struct {
	t      *testing.T
	pio    *bus.Bus
	resets atomic.Int32
}

func newKBC(t *testing.T) *kbc {
	k := &kbc{t: t, pio: &bus.Bus{}}
	c := New(func() { k.resets.Add(1) })
	if err := c.Register(k.pio); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kbc) inb(port uint64) byte {
	var b [1]byte
	if !k.pio.Read(port, b[:]) {
		k.t.Fatalf("port %#x not claimed", port)
	}
	return b[0]
}

func (k *kbc) outb(port uint64, v byte) {
	if !k.pio.Write(port, []byte{v}) {
		k.t.Fatalf("port %#x not claimed", port)
	}
}

// command mirrors __i8042_command in drivers/input/serio/i8042.c: wait for
// IBF clear before each write, OBF set before each read. It fails the way
// the driver does: on a timeout or on missing aux data for AUX_LOOP.
func (k *kbc) command(cmd byte, params []byte, nresults int) ([]byte, error) {
	waitWrite := func() error {
		for range 100 {
			if k.inb(CommandPort)&statusIBF == 0 {
				return nil
			}
		}
		return errors.New("timeout waiting for IBF clear")
	}
	waitRead := func() error {
		for range 100 {
			if k.inb(CommandPort)&statusOBF != 0 {
				return nil
			}
		}
		return errors.New("timeout waiting for OBF")
	}
	if err := waitWrite(); err != nil {
		return nil, err
	}
	k.outb(CommandPort, cmd)
	for _, p := range params {
		if err := waitWrite(); err != nil {
			return nil, err
		}
		k.outb(DataPort, p)
	}
	var res []byte
	for range nresults {
		if err := waitRead(); err != nil {
			return nil, err
		}
		if cmd == cmdAuxLoop && k.inb(CommandPort)&statusAUXData == 0 {
			return nil, errors.New("auxerr")
		}
		res = append(res, k.inb(DataPort))
	}
	return res, nil
}

func TestStatusAtReset(t *testing.T) {
	k := newKBC(t)
	s := k.inb(CommandPort)
	if s&(statusOBF|statusIBF) != 0 {
		t.Fatalf("status %#x: buffers not empty", s)
	}
	if s&statusUnlock == 0 {
		t.Fatalf("status %#x: keylock active, Linux would warn", s)
	}
	if s&statusSYS == 0 {
		t.Fatalf("status %#x: system flag clear", s)
	}
}

// TestLinuxControllerInit follows i8042_controller_check/selftest/init.
func TestLinuxControllerInit(t *testing.T) {
	k := newKBC(t)
	// i8042_flush: nothing to drain.
	if k.inb(CommandPort)&statusOBF != 0 {
		t.Fatal("output buffer full at reset")
	}
	if r, err := k.command(cmdSelfTest, nil, 1); err != nil || r[0] != 0x55 {
		t.Fatalf("self-test = %x, %v; want 55", r, err)
	}
	// Two stable CTR reads.
	a, err := k.command(cmdReadCTR, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.command(cmdReadCTR, nil, 1)
	if err != nil || a[0] != b[0] {
		t.Fatalf("CTR reads %x then %x (%v)", a, b, err)
	}
	ctr := (a[0] | ctrKbdDis) &^ ctrKbdInt
	if _, err := k.command(cmdWriteCTR, []byte{ctr}, 0); err != nil {
		t.Fatal(err)
	}
	if r, _ := k.command(cmdReadCTR, nil, 1); r[0] != ctr {
		t.Fatalf("CTR = %#x after writing %#x", r[0], ctr)
	}
	if r, err := k.command(cmdKbdTest, nil, 1); err != nil || r[0] != 0 {
		t.Fatalf("keyboard interface test = %x, %v", r, err)
	}
	// Without i8042.noaux: the aux loop and test must fail fast.
	if _, err := k.command(cmdAuxLoop, []byte{0x5a}, 1); err == nil {
		t.Fatal("aux loop succeeded: Linux would probe a mouse that is not there")
	}
	if r, err := k.command(cmdAuxTest, nil, 1); err != nil || r[0] == 0 || r[0] == 0xfa || r[0] == 0xff {
		t.Fatalf("aux test = %x, %v; want a failure code", r, err)
	}
	if k.inb(CommandPort)&statusOBF != 0 {
		t.Fatal("output buffer not emptied by reading it")
	}
	if k.resets.Load() != 0 {
		t.Fatal("probe caused a reset")
	}
}

// TestRebootK replays native_machine_emergency_restart's BOOT_KBD path.
func TestRebootK(t *testing.T) {
	k := newKBC(t)
	for range 10 {
		for i := 0; i < 0x10000; i++ {
			if k.inb(CommandPort)&statusIBF == 0 {
				break
			}
		}
		k.outb(CommandPort, 0xfe)
	}
	if n := k.resets.Load(); n != 10 {
		t.Fatalf("resets = %d, want 10", n)
	}
}

func TestResetOnlyFromResetLine(t *testing.T) {
	k := newKBC(t)
	k.outb(CommandPort, 0xff) // pulse nothing
	k.outb(CommandPort, 0xfd) // pulse bit 1 (A20), not reset
	k.outb(DataPort, 0x00)    // byte for a keyboard that is not there
	if k.resets.Load() != 0 {
		t.Fatal("reset without pulsing bit 0")
	}
	r, err := k.command(cmdReadOutput, nil, 1)
	if err != nil || r[0]&0x01 == 0 {
		t.Fatalf("output port = %x, %v", r, err)
	}
	if _, err := k.command(cmdWriteOutput, []byte{0x02}, 0); err != nil {
		t.Fatal(err)
	}
	if k.resets.Load() != 1 {
		t.Fatal("writing output port bit 0 low did not reset")
	}
}

func TestRegisterClaimsOnlyTwoPorts(t *testing.T) {
	k := newKBC(t)
	for _, p := range []uint64{0x61, 0x62, 0x63, 0x65} {
		var b [1]byte
		if k.pio.Read(p, b[:]) {
			t.Fatalf("port %#x claimed", p)
		}
	}
	c := New(nil)
	if err := c.Register(k.pio); err == nil {
		t.Fatal("second controller registered over the first")
	}
	c.WriteCommand(0xfe) // nil reset callback tolerated
}
