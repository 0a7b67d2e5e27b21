package kernel

import (
	"errors"
	"testing"
)

// mpEntry is one decoded configuration-table entry.
type mpEntry struct {
	typ  uint8
	body []byte
}

// parseMP finds the floating pointer where Linux looks (16-byte aligned in
// the last KiB of base memory), checks both checksums by re-summing, and
// returns the configuration table's entries.
func parseMP(t *testing.T, low []byte) (hdr []byte, entries []mpEntry) {
	t.Helper()
	var mpf []byte
	for off := 639 * 0x400; off < 640*0x400; off += 16 {
		if string(low[off:off+4]) == "_MP_" {
			mpf = low[off : off+16]
			break
		}
	}
	if mpf == nil {
		t.Fatal("no _MP_ floating pointer in [0x9fc00, 0xa0000)")
	}
	if sum(mpf) != 0 {
		t.Errorf("floating pointer checksum: bytes sum to %#x", sum(mpf))
	}
	if mpf[8] != 1 || mpf[9] != 4 || mpf[11] != 0 {
		t.Errorf("floating pointer length %d spec %d feature1 %d, want 1, 4, 0", mpf[8], mpf[9], mpf[11])
	}
	phys := le.Uint32(mpf[4:])
	hdr = low[phys : phys+44]
	if string(hdr[0:4]) != "PCMP" || hdr[6] != 4 {
		t.Fatalf("configuration table at %#x: signature %q spec %d", phys, hdr[0:4], hdr[6])
	}
	length := int(le.Uint16(hdr[4:]))
	table := low[phys : int(phys)+length]
	if sum(table) != 0 {
		t.Errorf("configuration table checksum: %d bytes sum to %#x", length, sum(table))
	}
	if le.Uint32(hdr[36:]) != 0xfee00000 {
		t.Errorf("local APIC address %#x", le.Uint32(hdr[36:]))
	}
	for off := 44; off < length; {
		size := 8
		if table[off] == mpProcessor {
			size = 20
		}
		if table[off] > mpLIntSrc || off+size > length {
			t.Fatalf("bad entry type %d at offset %d", table[off], off)
		}
		entries = append(entries, mpEntry{table[off], table[off : off+size]})
		off += size
	}
	if n := int(le.Uint16(hdr[34:])); n != len(entries) {
		t.Errorf("entry count %d, table holds %d", n, len(entries))
	}
	return hdr, entries
}

func TestMPTable(t *testing.T) {
	for _, cpus := range []int{1, 4, MaxCPUs} {
		m := plainMemory(t, 64<<20)
		mustLoad(t, m, Config{Kernel: fakeBzImage(nil), CPUs: cpus})
		low := guest(t, m, 0, 1<<20)
		_, entries := parseMP(t, low)

		var cpuIDs []int
		buses := map[uint8]string{}
		ioapicID := -1
		pins := map[uint8]uint8{}
		lints := map[uint8][2]uint8{}
		for _, e := range entries {
			b := e.body
			switch e.typ {
			case mpProcessor:
				cpuIDs = append(cpuIDs, int(b[1]))
				if b[3]&cpuEnabled == 0 {
					t.Errorf("CPU %d not enabled", b[1])
				}
				if (b[3]&cpuBootProcessor != 0) != (b[1] == 0) {
					t.Errorf("CPU %d flags %#x: the boot processor must be APIC id 0, and only it", b[1], b[3])
				}
			case mpBus:
				buses[b[1]] = string(b[2:8])
			case mpIOAPIC:
				ioapicID = int(b[1])
				if b[3]&1 == 0 || le.Uint32(b[4:]) != 0xfec00000 {
					t.Errorf("IOAPIC flags %#x address %#x", b[3], le.Uint32(b[4:]))
				}
			case mpIntSrc:
				if b[1] != mpINT || b[4] != isaBusID || int(b[6]) != cpus {
					t.Errorf("interrupt entry % x: want INT from the ISA bus to IOAPIC %d", b, cpus)
				}
				pins[b[5]] = b[7]
			case mpLIntSrc:
				lints[b[1]] = [2]uint8{b[6], b[7]}
			}
		}
		if len(cpuIDs) != cpus {
			t.Fatalf("%d CPUs: %d processor entries", cpus, len(cpuIDs))
		}
		for i, id := range cpuIDs {
			if id != i {
				t.Errorf("processor entry %d has APIC id %d", i, id)
			}
		}
		if buses[pciBusID] != "PCI   " || buses[isaBusID] != "ISA   " || len(buses) != 2 {
			t.Errorf("buses %q", buses)
		}
		if ioapicID != cpus {
			t.Errorf("IOAPIC id %d, want %d (after the CPUs)", ioapicID, cpus)
		}
		if len(pins) != 16 {
			t.Errorf("%d ISA IRQs routed, want 16", len(pins))
		}
		for irq, pin := range pins {
			// KVM's default routing: GSI n -> IOAPIC pin n (see isaIRQPin).
			if pin != irq {
				t.Errorf("ISA IRQ %d -> pin %d", irq, pin)
			}
		}
		if lints[mpExtINT] != [2]uint8{0, 0} || lints[mpNMI] != [2]uint8{0xff, 1} {
			t.Errorf("local interrupts %v: want ExtINT on CPU 0 LINT0, NMI on all LINT1", lints)
		}
		// The table lies in what e820 reserves.
		size := mpTableSize(cpus)
		if mpTableAddr < ebdaStart || mpTableAddr+size > highMemory {
			t.Errorf("%d-byte MP table at %#x outside the reserved [%#x, %#x)", size, mpTableAddr, ebdaStart, highMemory)
		}
	}
}

func TestMPTableCPUCount(t *testing.T) {
	for _, n := range []int{0, MaxCPUs + 1, 1000} {
		if _, err := mpTable(mpTableAddr, n); !errors.Is(err, ErrCPUCount) {
			t.Errorf("%d CPUs: err = %v", n, err)
		}
	}
}
