package console

import (
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/devices/serial"
)

// TestWithUART wires a TCP console to a real UART the way the VMM does
// and plays the guest's side through the UART's registers.
func TestWithUART(t *testing.T) {
	con := newTCP(t, nil)
	uart := serial.New(serial.Config{IRQ: serial.COM1IRQ, Out: con})
	defer uart.Close()
	if err := con.Start(uart); err != nil {
		t.Fatal(err)
	}
	conn, r := dial(t, con)

	reg := func(off uint64) byte {
		b := []byte{0}
		uart.Read(off, b)
		return b[0]
	}
	uart.Write(2, []byte{0x07}) // FIFO on and cleared
	uart.Write(3, []byte{0x03}) // 8N1

	for _, c := range []byte("guest> ") {
		uart.Write(0, []byte{c})
	}
	expect(t, r, "guest> ")

	conn.Write([]byte("uname\r"))
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); len(got) < len("uname\r"); {
		if time.Now().After(deadline) {
			t.Fatalf("guest read only %q", got)
		}
		if reg(5)&0x01 != 0 { // LSR.DR
			got = append(got, reg(0))
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	if string(got) != "uname\r" {
		t.Fatalf("guest read %q", got)
	}
}
