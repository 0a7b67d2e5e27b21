package pcibus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hlsvmm/hlsvmm/vmm/bus"
)

type fakeVM struct{ pio, mmio bus.Bus }

func (v *fakeVM) PIO() *bus.Bus  { return &v.pio }
func (v *fakeVM) MMIO() *bus.Bus { return &v.mmio }

type barEvent struct {
	bar    int
	addr   uint64
	mapped bool
}

type testDev struct {
	cs     *ConfigSpace
	mu     sync.Mutex
	events []barEvent
	writes []string
}

func (d *testDev) Config() *ConfigSpace { return d.cs }
func (d *testDev) ReadBAR(bar int, off uint64, data []byte) {
	for i := range data {
		data[i] = byte(bar<<4) | byte(off+uint64(i))
	}
}
func (d *testDev) WriteBAR(bar int, off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes = append(d.writes, fmt.Sprintf("bar%d+%#x=%x", bar, off, data))
}
func (d *testDev) BARMapped(bar int, addr uint64, mapped bool) {
	d.events = append(d.events, barEvent{bar, addr, mapped})
}

// guest drives configuration mechanism #1 the way Linux's pci_conf1_read/write do.
type guest struct {
	t  *testing.T
	vm *fakeVM
}

func (g guest) in(port uint64, n int) uint32 {
	g.t.Helper()
	b := make([]byte, n)
	if !g.vm.pio.Read(port, b) {
		g.t.Fatalf("port %#x width %d not claimed", port, n)
	}
	var v [4]byte
	copy(v[:], b)
	return binary.LittleEndian.Uint32(v[:])
}

func (g guest) out(port uint64, n int, val uint32) {
	g.t.Helper()
	var v [4]byte
	binary.LittleEndian.PutUint32(v[:], val)
	if !g.vm.pio.Write(port, v[:n]) {
		g.t.Fatalf("port %#x width %d not claimed", port, n)
	}
}

func confAddr(busNr, dev, fn, reg int) uint32 {
	return 1<<31 | uint32(busNr)<<16 | uint32(dev)<<11 | uint32(fn)<<8 | uint32(reg&0xFC)
}

func (g guest) cfgRead(dev, reg, n int) uint32 {
	g.t.Helper()
	g.out(ConfigAddressPort, 4, confAddr(0, dev, 0, reg))
	return g.in(ConfigDataPort+uint64(reg&3), n)
}

func (g guest) cfgWrite(dev, reg, n int, v uint32) {
	g.t.Helper()
	g.out(ConfigAddressPort, 4, confAddr(0, dev, 0, reg))
	g.out(ConfigDataPort+uint64(reg&3), n, v)
}

func newBus(t *testing.T) (*Bus, guest) {
	t.Helper()
	vm := &fakeVM{}
	b, err := New(vm, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, guest{t, vm}
}

func newTestDev(t *testing.T, bars map[int]BAR) *testDev {
	t.Helper()
	cs := NewConfigSpace(Header{VendorID: 0x1AF4, DeviceID: 0x1041, Revision: 1, Class: 0x020000,
		SubsystemVendorID: 0x1AF4, SubsystemID: 0x1100})
	for i := range numBARs {
		if b, ok := bars[i]; ok {
			if err := cs.AddBAR(i, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &testDev{cs: cs}
}

// TestLinuxType1Probe replays arch/x86/pci/direct.c: pci_check_type1 and
// pci_sanity_check, which decide whether Linux uses PCI at all without ACPI.
func TestLinuxType1Probe(t *testing.T) {
	_, g := newBus(t)
	g.out(0xCFB, 1, 0x01)
	tmp := g.in(ConfigAddressPort, 4)
	g.out(ConfigAddressPort, 4, 0x8000_0000)
	if got := g.in(ConfigAddressPort, 4); got != 0x8000_0000 {
		t.Fatalf("CONFIG_ADDRESS reads %#x after writing 0x80000000", got)
	}
	g.out(ConfigAddressPort, 4, tmp)
	found := false
	for devfn := range 0x100 {
		g.out(ConfigAddressPort, 4, confAddr(0, devfn>>3, devfn&7, 0x08))
		if g.in(ConfigDataPort+2, 2) == 0x0600 {
			found = true
			if devfn != 0 {
				t.Errorf("host bridge at devfn %#x, want 0", devfn)
			}
		}
	}
	if !found {
		t.Fatal("no host bridge (class 0x0600) on bus 0: Linux would not trust type 1 access")
	}
	if v, d := g.cfgRead(0, RegVendorID, 2), g.cfgRead(0, RegDeviceID, 2); v != HostBridgeVendor || d != HostBridgeDevice {
		t.Errorf("host bridge %04x:%04x", v, d)
	}
	if h := g.cfgRead(0, RegHeaderType, 1); h != 0 {
		t.Errorf("host bridge header type %#x, want 0 (single function, type 0)", h)
	}
}

func TestAbsentFunctionsReadAllOnes(t *testing.T) {
	b, g := newBus(t)
	if _, err := b.Add(newTestDev(t, nil)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		addr uint32
	}{
		{"empty slot", confAddr(0, 7, 0, 0)},
		{"function 1", confAddr(0, 1, 1, 0)},
		{"bus 1", confAddr(1, 0, 0, 0)},
		{"enable bit clear", confAddr(0, 1, 0, 0) &^ (1 << 31)},
	}
	for _, c := range cases {
		g.out(ConfigAddressPort, 4, c.addr)
		if v := g.in(ConfigDataPort, 4); v != 0xFFFF_FFFF {
			t.Errorf("%s: read %#x, want all ones", c.name, v)
		}
		g.out(ConfigDataPort, 4, 0) // ignored, must not panic
	}
	g.out(ConfigAddressPort, 4, confAddr(0, 1, 0, 0))
	if v := g.in(ConfigDataPort, 4); v != 0x1041_1AF4 {
		t.Errorf("device 1 ID %#x", v)
	}
	if v := g.in(ConfigAddressPort, 2); v != 0xFFFF {
		t.Errorf("16-bit read of CONFIG_ADDRESS %#x, want all ones", v)
	}
}

func TestDataPortWidthsAndOffsets(t *testing.T) {
	b, g := newBus(t)
	dev := newTestDev(t, nil)
	if _, err := b.Add(dev); err != nil {
		t.Fatal(err)
	}
	g.out(ConfigAddressPort, 4, confAddr(0, 1, 0, 0x08))
	if v := g.in(ConfigDataPort, 4); v != 0x0200_0001 {
		t.Errorf("class/revision dword %#x", v)
	}
	if v := g.in(ConfigDataPort+1, 2); v != 0x0000 {
		t.Errorf("prog-if/subclass word %#x", v)
	}
	if v := g.in(ConfigDataPort+3, 1); v != 0x02 {
		t.Errorf("base class byte %#x", v)
	}
	if v := g.cfgRead(1, RegSubsystemID, 2); v != 0x1100 {
		t.Errorf("subsystem ID %#x", v)
	}
}

func TestReadOnlyFieldsStayReadOnly(t *testing.T) {
	b, g := newBus(t)
	if _, err := b.Add(newTestDev(t, nil)); err != nil {
		t.Fatal(err)
	}
	before := make([]uint32, 64)
	for r := range 64 {
		before[r] = g.cfgRead(1, 4*r, 4)
	}
	for r := range 64 {
		g.cfgWrite(1, 4*r, 4, 0xFFFF_FFFF)
	}
	for r := range 64 {
		reg := 4 * r
		got := g.cfgRead(1, reg, 4)
		var want uint32
		switch reg {
		case RegCommand:
			want = before[r]&0xFFFF_0000 | commandWritableMask
		case RegCacheLineSize:
			want = before[r] | 0xFFFF
		case RegInterruptLine:
			want = before[r] | 0xFF
		default:
			want = before[r]
		}
		if got != want {
			t.Errorf("register %#x: %#x after writing all ones, want %#x", reg, got, want)
		}
	}
	if rom := g.cfgRead(1, RegROMAddress, 4); rom != 0 {
		t.Errorf("expansion ROM sizes as %#x, want 0 (none)", rom)
	}
}

func TestBARPlacementSizingAndMove(t *testing.T) {
	b, g := newBus(t)
	first := newTestDev(t, map[int]BAR{0: {Size: 0x1000}})
	dev := newTestDev(t, map[int]BAR{0: {Size: 0x8000}, 2: {Size: 0x1_0000, Is64: true, Prefetchable: true}})
	if _, err := b.Add(first); err != nil {
		t.Fatal(err)
	}
	slot, err := b.Add(dev)
	if err != nil {
		t.Fatal(err)
	}
	if slot != 2 {
		t.Fatalf("second device at %d, want 2", slot)
	}
	bar0 := uint64(g.cfgRead(slot, RegBAR0, 4))
	bar2 := uint64(g.cfgRead(slot, RegBAR0+8, 4)) | uint64(g.cfgRead(slot, RegBAR0+12, 4))<<32
	if bar0&0xF != 0 || bar2&0xF != 0xC {
		t.Fatalf("BAR flags: bar0 %#x bar2 %#x (want 32-bit non-prefetchable, 64-bit prefetchable)", bar0, bar2)
	}
	a0, a2 := bar0&^0xF, bar2&^0xF
	for _, c := range []struct{ addr, size uint64 }{{a0, 0x8000}, {a2, 0x1_0000}} {
		if c.addr%c.size != 0 || c.addr < DefaultWindowStart || c.addr+c.size > DefaultWindowEnd {
			t.Errorf("BAR at %#x size %#x: not naturally aligned inside the window", c.addr, c.size)
		}
	}
	if g.cfgRead(slot, RegCommand, 2)&CommandMemory == 0 {
		t.Fatal("memory decoding off after Add")
	}
	want := []barEvent{{0, a0, true}, {2, a2, true}}
	if fmt.Sprint(dev.events) != fmt.Sprint(want) {
		t.Fatalf("BARMapped calls %v, want %v", dev.events, want)
	}
	// The device answers at its BAR, with the BAR-relative offset.
	buf := make([]byte, 2)
	if !g.vm.mmio.Read(a2+0x10, buf) || buf[0] != 0x30 {
		t.Fatalf("read through BAR 2: claimed? %v data %x", g.vm.mmio.Read(a2+0x10, buf), buf)
	}

	// Linux's __pci_read_base: decode off, write all ones, read, restore.
	dev.events = nil
	cmd := g.cfgRead(slot, RegCommand, 2)
	g.cfgWrite(slot, RegCommand, 2, cmd&^CommandMemory)
	if g.vm.mmio.Read(a0, buf) || g.vm.mmio.Read(a2, buf) {
		t.Fatal("BARs still decode with memory space disabled")
	}
	g.cfgWrite(slot, RegBAR0, 4, 0xFFFF_FFFF)
	if v := g.cfgRead(slot, RegBAR0, 4); v != 0xFFFF_8000 {
		t.Errorf("BAR0 sizes as %#x, want 0xffff8000", v)
	}
	g.cfgWrite(slot, RegBAR0+8, 4, 0xFFFF_FFFF)
	g.cfgWrite(slot, RegBAR0+12, 4, 0xFFFF_FFFF)
	if lo, hi := g.cfgRead(slot, RegBAR0+8, 4), g.cfgRead(slot, RegBAR0+12, 4); lo != 0xFFFF_000C || hi != 0xFFFF_FFFF {
		t.Errorf("64-bit BAR sizes as %#x:%#x, want 0xffffffff:0xffff000c", hi, lo)
	}
	g.cfgWrite(slot, RegBAR0, 4, uint32(a0))
	g.cfgWrite(slot, RegBAR0+8, 4, uint32(a2))
	g.cfgWrite(slot, RegBAR0+12, 4, uint32(a2>>32))
	g.cfgWrite(slot, RegCommand, 2, cmd)
	if !g.vm.mmio.Read(a0, buf) || !g.vm.mmio.Read(a2, buf) {
		t.Fatal("BARs do not decode after restoring them")
	}
	want = []barEvent{{0, a0, false}, {2, a2, false}, {0, a0, true}, {2, a2, true}}
	if fmt.Sprint(dev.events) != fmt.Sprint(want) {
		t.Fatalf("BARMapped calls %v, want %v", dev.events, want)
	}

	// The guest moves BAR 0 while decoding: old range gone, new one live.
	dev.events = nil
	moved := uint64(0xE000_0000)
	g.cfgWrite(slot, RegBAR0, 4, uint32(moved))
	if g.vm.mmio.Read(a0, buf) {
		t.Error("old BAR 0 range still claimed after the move")
	}
	if !g.vm.mmio.Write(moved+4, []byte{1, 2}) {
		t.Fatal("new BAR 0 range not claimed")
	}
	if got := dev.writes[len(dev.writes)-1]; got != "bar0+0x4=0102" {
		t.Errorf("write reached device as %q", got)
	}
	want = []barEvent{{0, a0, false}, {0, moved, true}}
	if fmt.Sprint(dev.events) != fmt.Sprint(want) {
		t.Fatalf("BARMapped calls %v, want %v", dev.events, want)
	}

	// Moving it onto the other device's BAR fails to map, without harm.
	dev.events = nil
	other := uint64(g.cfgRead(1, RegBAR0, 4))
	g.cfgWrite(slot, RegBAR0, 4, uint32(other))
	if len(dev.events) != 1 || dev.events[0].mapped {
		t.Errorf("overlapping BAR: events %v, want only the unmap", dev.events)
	}
	if !g.vm.mmio.Read(other, buf) || buf[0] != 0x00 {
		t.Error("first device lost its BAR to an overlapping one")
	}
}

func TestCapabilityList(t *testing.T) {
	cs := NewConfigSpace(Header{VendorID: 1})
	a, err := cs.AddCapability(CapVendor, []byte{5, 1, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bOff, err := cs.AddCapability(CapVendor, []byte{5, 3}, []byte{0, 0xFF})
	if err != nil {
		t.Fatal(err)
	}
	if a != 0x40 || bOff != 0x48 {
		t.Fatalf("capabilities at %#x, %#x; want dword-aligned 0x40, 0x48", a, bOff)
	}
	if cs.Uint16(RegStatus)&StatusCapabilities == 0 {
		t.Fatal("status lacks the capability-list bit")
	}
	var walked []int
	for p, n := int(cs.data[RegCapPointer]), 0; p != 0 && n < 48; p, n = int(cs.data[p+1]), n+1 {
		walked = append(walked, p)
	}
	if fmt.Sprint(walked) != "[64 72]" {
		t.Fatalf("capability chain %v", walked)
	}
	cs.Write(bOff, []byte{0xAA, 0xBB, 0xCC, 0xDD})
	got := make([]byte, 4)
	cs.Read(bOff, got)
	if fmt.Sprintf("%x", got) != "090005dd" {
		t.Errorf("capability after write %x: only the masked byte may change", got)
	}
	for range 100 {
		if _, err := cs.AddCapability(CapVendor, make([]byte, 14), nil); err != nil {
			return
		}
	}
	t.Fatal("capabilities never run out of space")
}

func TestAddBARRejectsBadDefinitions(t *testing.T) {
	cs := NewConfigSpace(Header{})
	for _, c := range []struct {
		i int
		b BAR
	}{{-1, BAR{Size: 16}}, {6, BAR{Size: 16}}, {5, BAR{Size: 16, Is64: true}}, {0, BAR{Size: 0x3000}}, {0, BAR{Size: 8}}} {
		if err := cs.AddBAR(c.i, c.b); err == nil {
			t.Errorf("AddBAR(%d, %+v) accepted", c.i, c.b)
		}
	}
	if err := cs.AddBAR(0, BAR{Size: 16, Is64: true}); err != nil {
		t.Fatal(err)
	}
	if err := cs.AddBAR(1, BAR{Size: 16}); err == nil {
		t.Error("AddBAR over the upper half of a 64-bit BAR accepted")
	}
}

func TestBusFull(t *testing.T) {
	vm := &fakeVM{}
	b, err := New(vm, &Options{WindowStart: 0xC000_0000, WindowEnd: 0xC000_4000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(newTestDev(t, map[int]BAR{0: {Size: 0x2000}})); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(newTestDev(t, map[int]BAR{0: {Size: 0x4000}})); !errors.Is(err, ErrBusFull) {
		t.Fatalf("BAR past the window: err %v, want ErrBusFull", err)
	}
	for range MaxDevices - 2 {
		if _, err := b.Add(newTestDev(t, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Add(newTestDev(t, nil)); !errors.Is(err, ErrBusFull) {
		t.Fatalf("33rd device: err %v, want ErrBusFull", err)
	}
	if _, err := New(&fakeVM{}, &Options{WindowStart: 2, WindowEnd: 1}); err == nil {
		t.Error("empty window accepted")
	}
	if _, err := New(vm, nil); err == nil {
		t.Error("second bus on the same ports accepted")
	}
}

func TestConcurrentConfigCycles(t *testing.T) {
	b, g := newBus(t)
	if _, err := b.Add(newTestDev(t, map[int]BAR{0: {Size: 0x1000}})); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				var d [4]byte
				binary.LittleEndian.PutUint32(d[:], confAddr(0, w%2, 0, 4*(i%16)))
				g.vm.pio.Write(ConfigAddressPort, d[:])
				g.vm.pio.Read(ConfigDataPort, d[:])
				g.vm.pio.Write(ConfigDataPort, d[:])
			}
		})
	}
	wg.Wait()
}
