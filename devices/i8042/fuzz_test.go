package i8042

import "testing"

// FuzzPorts feeds arbitrary guest accesses to both ports and checks that
// the controller never reports a full input buffer (which would make
// Linux's kb_wait spin), resets only on a reset-line pulse, and keeps the
// key lock off.
func FuzzPorts(f *testing.F) {
	f.Add([]byte{0x64, 0xaa, 0x60, 0x00, 0x64, 0x20, 0x60, 0x00, 0x64, 0x60, 0xe0, 0x45})
	f.Add([]byte{0x64, 0xd1, 0xe0, 0x01, 0x64, 0xfe})
	f.Fuzz(func(t *testing.T, ops []byte) {
		resets := 0
		c := New(func() { resets++ })
		want := 0
		pendingOutput := false
		for i := 0; i+1 < len(ops); i += 2 {
			op, v := ops[i], ops[i+1]
			switch op {
			case 0x64: // write command port
				if v >= 0xf0 && v&1 == 0 {
					want++
				}
				pendingOutput = v == cmdWriteOutput
				c.WriteCommand(v)
			case 0xe0: // write data port
				if pendingOutput && v&1 == 0 {
					want++
				}
				pendingOutput = false
				c.WriteData(v)
			case 0x60:
				c.ReadData()
			default:
				c.Status()
			}
			if s := c.Status(); s&statusIBF != 0 || s&statusUnlock == 0 {
				t.Fatalf("status %#x", s)
			}
		}
		if resets != want {
			t.Fatalf("%d resets, want %d", resets, want)
		}
	})
}
