package pcibus

import (
	"encoding/binary"
	"sync"
	"testing"
)

// nopListener accepts MSI-X events; the fuzz checks state, not events.
type nopListener struct{ mu sync.Mutex }

func (*nopListener) SignalMSI(uint64, uint32) error { return nil }
func (*nopListener) MSIXEnabled(bool)               {}
func (*nopListener) MSIXMasked(int, bool)           {}
func (*nopListener) MSIXUpdated(int)                {}

// FuzzConfigCycles drives the configuration ports with arbitrary accesses
// (5 bytes each: port offset and width in byte 0, value in bytes 1-4) and
// checks that identity stays read-only and MMIO registrations always match
// what the configuration space decodes.
func FuzzConfigCycles(f *testing.F) {
	var seed []byte
	out := func(port, width int, v uint32) {
		seed = append(seed, byte(port)|byte(width)<<3)
		seed = binary.LittleEndian.AppendUint32(seed, v)
	}
	for _, reg := range []int{RegCommand, RegBAR0, RegBAR0 + 8, RegBAR0 + 12, 0x42} {
		out(0, 2, confAddr(0, 1, 0, reg))
		out(4, 2, 0xFFFF_FFFF)
		out(4, 2, 0xC100_0000)
	}
	out(3, 0, 1)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		vm := &fakeVM{}
		b, err := New(vm, nil)
		if err != nil {
			t.Fatal(err)
		}
		dev := newTestDev(t, map[int]BAR{0: {Size: 0x4000}, 2: {Size: 0x1_0000, Is64: true}})
		l := &nopListener{}
		m, err := AddMSIX(dev.cs, MSIXConfig{Vectors: 4, TableOffset: 0x2000, PBAOffset: 0x3000, Lock: &l.mu, Sender: l, Listener: l})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Add(dev); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		for ; len(in) >= 5; in = in[5:] {
			port, width := uint64(in[0]&7), 1<<(in[0]>>3&3)
			if width > 4 {
				width = 4
			}
			copy(buf, in[1:5])
			if in[0]&0x80 != 0 {
				vm.pio.Read(ConfigAddressPort+port, buf[:width])
			} else {
				vm.pio.Write(ConfigAddressPort+port, buf[:width])
			}
			if in[0]&0x40 != 0 { // and a table write, as the device would do
				l.mu.Lock()
				m.WriteTable(uint64(in[1]), buf[:width])
				l.mu.Unlock()
			}
			b.mu.Lock()
			f := b.devices[1]
			if id := f.cs.Uint32(RegVendorID); id != 0x1041_1AF4 {
				t.Fatalf("identity changed to %#x", id)
			}
			memOn := f.cs.Command()&CommandMemory != 0
			for i := range numBARs {
				bar, ok := f.cs.bar(i)
				if !ok {
					continue
				}
				mp := f.mapping[i]
				if mp.mapped && (!memOn || mp.base != f.cs.barAddress(i)) {
					t.Fatalf("BAR %d registered at %#x; decodes %v at %#x", i, mp.base, memOn, f.cs.barAddress(i))
				}
				if mp.mapped && !vm.mmio.Read(mp.base+bar.Size-1, buf[:1]) {
					t.Fatalf("BAR %d at %#x not on the MMIO bus", i, mp.base)
				}
			}
			b.mu.Unlock()
		}
	})
}
