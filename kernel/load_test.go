package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

var le = binary.LittleEndian

// plainMemory is size bytes of guest RAM at 0 in a Go slice.
func plainMemory(t testing.TB, size uint64) *memory.Memory {
	t.Helper()
	m, err := memory.FromRegions(memory.Region{GuestPhys: 0, Host: make([]byte, size)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// bigMemory maps size bytes of guest RAM with the PCI hole, as vmm does.
// Only the pages the test touches are ever committed.
func bigMemory(t testing.TB, size uint64) *memory.Memory {
	t.Helper()
	m, err := memory.New(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func guest(t testing.TB, m *memory.Memory, gpa, n uint64) []byte {
	t.Helper()
	b, err := m.Slice(gpa, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func zeroPageOf(t testing.TB, m *memory.Memory) []byte {
	return guest(t, m, zeroPageAddr, zeroPageSize)
}

func mustLoad(t testing.TB, m *memory.Memory, cfg Config) *CPUState {
	t.Helper()
	s, err := Load(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Offsets asserted here are the kernel's (struct boot_params comments in
// bootparam.h), written as numbers on purpose: the test checks the named
// constants against them.
func TestZeroPageLayout(t *testing.T) {
	m := plainMemory(t, 128<<20)
	image := fakeBzImage(nil)
	initrd := bytes.Repeat([]byte("initrd!"), 1000)
	mustLoad(t, m, Config{Kernel: image, Initrd: initrd, Cmdline: "console=ttyS0 reboot=k", CPUs: 2})
	bp := zeroPageOf(t, m)

	// The setup header is copied from the image: [0x1f1, 0x26c) except the
	// fields the loader owns.
	owned := map[int]bool{}
	for _, f := range []struct{ off, size int }{
		{0x1fa, 2}, {0x210, 1}, {0x211, 1}, {0x214, 4}, {0x218, 4}, {0x21c, 4}, {0x224, 2}, {0x228, 4},
	} {
		for i := range f.size {
			owned[f.off+i] = true
		}
	}
	for off := 0x1f1; off < 0x26c; off++ {
		if !owned[off] && bp[off] != image[off] {
			t.Errorf("zero page byte %#x = %#x, image has %#x", off, bp[off], image[off])
		}
	}
	if string(bp[0x202:0x206]) != "HdrS" || le.Uint16(bp[0x206:]) != 0x020f {
		t.Errorf("header magic/version not at 0x202/0x206")
	}
	for off := 0x26c; off < 0x290; off++ {
		if bp[off] != 0 {
			t.Errorf("byte %#x after the setup header = %#x, want 0", off, bp[off])
		}
	}
	if bp[0x210] != 0xff {
		t.Errorf("type_of_loader (0x210) = %#x, want 0xff", bp[0x210])
	}
	if bp[0x211] != LoadedHigh|CanUseHeap {
		t.Errorf("loadflags (0x211) = %#x, want LOADED_HIGH|CAN_USE_HEAP", bp[0x211])
	}
	if got := le.Uint16(bp[0x224:]); got != 0xde00 {
		t.Errorf("heap_end_ptr (0x224) = %#x, want 0xde00", got)
	}
	if got := le.Uint16(bp[0x1fa:]); got != 0xffff {
		t.Errorf("vid_mode (0x1fa) = %#x, want 0xffff", got)
	}
	if got := le.Uint32(bp[0x214:]); got != fakePref {
		t.Errorf("code32_start (0x214) = %#x, want the load address %#x", got, fakePref)
	}
	if bp[0x1ef] != 0 {
		t.Errorf("sentinel (0x1ef) = %#x, want 0", bp[0x1ef])
	}

	// Command line: cmd_line_ptr (0x228), ext_cmd_line_ptr (0x0c8).
	ptr := uint64(le.Uint32(bp[0x228:])) | uint64(le.Uint32(bp[0x0c8:]))<<32
	if ptr >= ebdaStart || ptr < 0x1000 {
		t.Fatalf("cmd_line_ptr %#x not in low memory", ptr)
	}
	cl := guest(t, m, ptr, 23)
	if string(cl) != "console=ttyS0 reboot=k\x00" {
		t.Errorf("command line at %#x = %q", ptr, cl)
	}

	// Initrd: ramdisk_image (0x218), ramdisk_size (0x21c), ext_* (0x0c0, 0x0c4).
	addr := uint64(le.Uint32(bp[0x218:])) | uint64(le.Uint32(bp[0x0c0:]))<<32
	size := uint64(le.Uint32(bp[0x21c:])) | uint64(le.Uint32(bp[0x0c4:]))<<32
	if size != uint64(len(initrd)) || !bytes.Equal(guest(t, m, addr, size), initrd) {
		t.Errorf("initrd at %#x size %d: contents differ", addr, size)
	}

	// e820: e820_entries (0x1e8), e820_table (0x2d0), 20-byte entries.
	want := []E820Entry{{0, 0x9fc00, 1}, {0x9fc00, 0x60400, 2}, {0x100000, 128<<20 - 0x100000, 1}}
	if got := readE820(bp); !equalE820(got, want) {
		t.Errorf("e820 = %v, want %v", got, want)
	}

	// The protected-mode kernel is at its load address.
	if !bytes.Equal(guest(t, m, fakePref, fakePayload), image[(fakeSetupSects+1)*512:]) {
		t.Error("protected-mode kernel not copied to pref_address")
	}
}

func TestZeroPageOffsetsMatchBootparamH(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"ext_ramdisk_image", bpExtRamdiskImage, 0x0c0},
		{"ext_ramdisk_size", bpExtRamdiskSize, 0x0c4},
		{"ext_cmd_line_ptr", bpExtCmdLinePtr, 0x0c8},
		{"e820_entries", bpE820Entries, 0x1e8},
		{"sentinel", bpSentinel, 0x1ef},
		{"hdr", hdrOffset, 0x1f1},
		{"hdr.boot_flag", offBootFlag, 0x1fe},
		{"hdr.header", offHeader, 0x202},
		{"hdr.version", offVersion, 0x206},
		{"hdr.type_of_loader", offTypeOfLoader, 0x210},
		{"hdr.loadflags", offLoadflags, 0x211},
		{"hdr.ramdisk_image", offRamdiskImage, 0x218},
		{"hdr.ramdisk_size", offRamdiskSize, 0x21c},
		{"hdr.heap_end_ptr", offHeapEndPtr, 0x224},
		{"hdr.cmd_line_ptr", offCmdLinePtr, 0x228},
		{"hdr.initrd_addr_max", offInitrdAddrMax, 0x22c},
		{"hdr.kernel_alignment", offKernelAlignment, 0x230},
		{"hdr.relocatable_kernel", offRelocatableKernel, 0x234},
		{"hdr.xloadflags", offXloadflags, 0x236},
		{"hdr.cmdline_size", offCmdlineSize, 0x238},
		{"hdr.pref_address", offPrefAddress, 0x258},
		{"hdr.init_size", offInitSize, 0x260},
		{"e820_table", bpE820Table, 0x2d0},
		{"e820_table end", bpE820TableEnd, 0x2d0 + 128*20},
	} {
		if c.got != c.want {
			t.Errorf("%s at %#x, bootparam.h says %#x", c.name, c.got, c.want)
		}
	}
}

func readE820(bp []byte) []E820Entry {
	var out []E820Entry
	for i := range int(bp[0x1e8]) {
		off := 0x2d0 + 20*i
		out = append(out, E820Entry{le.Uint64(bp[off:]), le.Uint64(bp[off+8:]), le.Uint32(bp[off+16:])})
	}
	return out
}

func equalE820(a, b []E820Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestE820LeavesOutPCIHole(t *testing.T) {
	for _, tc := range []struct {
		size uint64
		want []E820Entry
	}{
		{256 << 20, []E820Entry{{0, 0x9fc00, 1}, {0x9fc00, 0x60400, 2}, {0x100000, 255 << 20, 1}}},
		{3 << 30, []E820Entry{{0, 0x9fc00, 1}, {0x9fc00, 0x60400, 2}, {0x100000, 3<<30 - 1<<20, 1}}},
		{4 << 30, []E820Entry{{0, 0x9fc00, 1}, {0x9fc00, 0x60400, 2}, {0x100000, 3<<30 - 1<<20, 1}, {4 << 30, 1 << 30, 1}}},
		{8 << 30, []E820Entry{{0, 0x9fc00, 1}, {0x9fc00, 0x60400, 2}, {0x100000, 3<<30 - 1<<20, 1}, {4 << 30, 5 << 30, 1}}},
	} {
		m := bigMemory(t, tc.size)
		mustLoad(t, m, Config{Kernel: fakeBzImage(nil), CPUs: 1})
		got := readE820(zeroPageOf(t, m))
		if !equalE820(got, tc.want) {
			t.Errorf("%d MiB: e820 = %v, want %v", tc.size>>20, got, tc.want)
		}
		var ram uint64
		for _, e := range got {
			if e.Addr < memory.HoleEnd && e.Addr+e.Size > memory.HoleStart {
				t.Errorf("%d MiB: entry %v overlaps the PCI hole", tc.size>>20, e)
			}
			if e.Type == E820RAM {
				ram += e.Size
			}
		}
		if ram != tc.size-(0x100000-0x9fc00) {
			t.Errorf("%d MiB: e820 RAM %d bytes, want all RAM but the reserved EBDA/BIOS area", tc.size>>20, ram)
		}
	}
}

func TestLoadRejectsBadMemoryLayout(t *testing.T) {
	notAtZero, _ := memory.FromRegions(memory.Region{GuestPhys: 1 << 20, Host: make([]byte, 64<<20)})
	tiny := plainMemory(t, 512<<10)
	for name, m := range map[string]*memory.Memory{"RAM not at 0": notAtZero, "below 1 MiB": tiny} {
		if _, err := Load(m, Config{Kernel: fakeBzImage(nil), CPUs: 1}); !errors.Is(err, ErrMemoryLayout) {
			t.Errorf("%s: err = %v, want ErrMemoryLayout", name, err)
		}
	}
}

func TestKernelPlacement(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mod      func([]byte)
		wantLoad uint64
	}{
		{"pref_address", nil, fakePref},
		{"pref_address 32 MiB", put64(offPrefAddress, 32<<20), 32 << 20},
		{"non-relocatable at pref_address", func(b []byte) { b[offRelocatableKernel] = 0 }, fakePref},
		// Protocol 2.09: no pref_address, so 1 MiB aligned up to kernel_alignment.
		{"relocatable without pref_address", put16(offVersion, 0x0209), 2 << 20},
		{"relocatable, 4 MiB alignment", func(b []byte) { put16(offVersion, 0x0209)(b); put32(offKernelAlignment, 4<<20)(b) }, 4 << 20},
		{"non-relocatable without pref_address", func(b []byte) { put16(offVersion, 0x0209)(b); b[offRelocatableKernel] = 0 }, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := plainMemory(t, 96<<20)
			image := fakeBzImage(tc.mod)
			s := mustLoad(t, m, Config{Kernel: image, CPUs: 1})
			entry := tc.wantLoad
			if binary.LittleEndian.Uint16(image[offVersion:]) >= 0x020c {
				entry += 0x200
			}
			if s.RIP != entry {
				t.Errorf("RIP = %#x, want %#x", s.RIP, entry)
			}
			if !bytes.Equal(guest(t, m, tc.wantLoad, fakePayload), image[(fakeSetupSects+1)*512:]) {
				t.Errorf("kernel not at %#x", tc.wantLoad)
			}
		})
	}
}

func TestKernelTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name string
		mem  uint64
		mod  func([]byte)
	}{
		{"init_size past RAM", 40 << 20, nil}, // needs [16 MiB, 48 MiB)
		{"pref_address past RAM", 64 << 20, put64(offPrefAddress, 64<<20)},
		{"init_size 4 GiB", 64 << 20, put32(offInitSize, 0xffffffff)},
	} {
		m := plainMemory(t, tc.mem)
		_, err := Load(m, Config{Kernel: fakeBzImage(tc.mod), CPUs: 1})
		if !errors.Is(err, ErrKernelTooLarge) {
			t.Errorf("%s: err = %v, want ErrKernelTooLarge", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), "MiB") {
			t.Errorf("%s: error %q does not give sizes", tc.name, err)
		}
	}
	// Exactly enough: [16 MiB, 48 MiB) ends at the end of RAM.
	if _, err := Load(plainMemory(t, 48<<20), Config{Kernel: fakeBzImage(nil), CPUs: 1}); err != nil {
		t.Errorf("kernel filling RAM exactly: %v", err)
	}
}

func TestInitrdPlacement(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mem       uint64
		initrdMax uint32
		size      uint64
		wantEnd   uint64 // page-aligned end of RAM/limit the initrd must end just below
	}{
		{"small guest: top of RAM", 128 << 20, fakeInitrdMax, 5 << 20, 128 << 20},
		{"odd size: page-aligned start", 128 << 20, fakeInitrdMax, 5<<20 + 123, 128 << 20},
		{"initrd_addr_max below RAM top", 1 << 30, 0x37ffffff, 1 << 20, 0x38000000},
		{"4 GiB guest: below initrd_addr_max 2 GiB", 4 << 30, fakeInitrdMax, 7<<20 + 1, 2 << 30},
		{"4 GiB guest, initrd_addr_max 4 GiB: below the hole", 4 << 30, 0xffffffff, 3 << 20, 3 << 30},
		{"unaligned initrd_addr_max", 1 << 30, 0x37fffeff, 1 << 20, 0x37fff000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m *memory.Memory
			if tc.mem > 256<<20 {
				m = bigMemory(t, tc.mem)
			} else {
				m = plainMemory(t, tc.mem)
			}
			initrd := make([]byte, tc.size)
			initrd[0], initrd[len(initrd)-1] = 0xa5, 0x5a
			mustLoad(t, m, Config{Kernel: fakeBzImage(put32(offInitrdAddrMax, tc.initrdMax)), Initrd: initrd, CPUs: 1})
			bp := zeroPageOf(t, m)
			addr, size := uint64(le.Uint32(bp[0x218:])), uint64(le.Uint32(bp[0x21c:]))
			if size != tc.size {
				t.Fatalf("ramdisk_size = %d, want %d", size, tc.size)
			}
			if addr%pageSize != 0 {
				t.Errorf("ramdisk_image %#x not page-aligned", addr)
			}
			end := addr + size
			if end > tc.wantEnd || tc.wantEnd-end >= pageSize {
				t.Errorf("initrd [%#x, %#x): want it to end within a page below %#x", addr, end, tc.wantEnd)
			}
			if end-1 > uint64(tc.initrdMax) {
				t.Errorf("initrd ends at %#x, past initrd_addr_max %#x", end, tc.initrdMax)
			}
			if addr < fakePref+fakeInitSize {
				t.Errorf("initrd at %#x overlaps the kernel's init_size area", addr)
			}
			g := guest(t, m, addr, size)
			if g[0] != 0xa5 || g[len(g)-1] != 0x5a {
				t.Error("initrd contents not at ramdisk_image")
			}
		})
	}
}

func TestInitrdTooLarge(t *testing.T) {
	// 128 MiB of RAM, kernel up to 48 MiB: 80 MiB left.
	m := plainMemory(t, 128<<20)
	_, err := Load(m, Config{Kernel: fakeBzImage(nil), Initrd: make([]byte, 81<<20), CPUs: 1})
	if !errors.Is(err, ErrInitrdTooLarge) {
		t.Fatalf("err = %v, want ErrInitrdTooLarge", err)
	}
	for _, s := range []string{"81 MiB", "80 MiB"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	// Nothing was written: the zero page is still empty.
	if bp := zeroPageOf(t, m); !bytes.Equal(bp, make([]byte, zeroPageSize)) {
		t.Error("failed Load wrote the zero page")
	}
	// 80 MiB fits exactly.
	if _, err := Load(m, Config{Kernel: fakeBzImage(nil), Initrd: make([]byte, 80<<20), CPUs: 1}); err != nil {
		t.Errorf("80 MiB initrd: %v", err)
	}
}

func TestCmdline(t *testing.T) {
	m := plainMemory(t, 64<<20)
	image := fakeBzImage(put32(offCmdlineSize, 16))
	if _, err := Load(m, Config{Kernel: image, Cmdline: strings.Repeat("x", 17), CPUs: 1}); !errors.Is(err, ErrCmdlineTooLong) ||
		!strings.Contains(err.Error(), "17 bytes") || !strings.Contains(err.Error(), "16") {
		t.Errorf("17-byte command line, cmdline_size 16: err = %v", err)
	}
	if _, err := Load(m, Config{Kernel: image, Cmdline: "a\x00b", CPUs: 1}); err == nil {
		t.Error("command line with a NUL accepted")
	}
	// Exactly cmdline_size bytes fit, NUL-terminated, and overwrite a longer
	// stale command line completely.
	copy(guest(t, m, cmdlineAddr, 64), strings.Repeat("y", 64))
	mustLoad(t, m, Config{Kernel: image, Cmdline: strings.Repeat("x", 16), CPUs: 1})
	if got := guest(t, m, cmdlineAddr, 18); string(got) != strings.Repeat("x", 16)+"\x00\x00" {
		t.Errorf("command line in guest = %q", got)
	}
	// An empty command line is a lone NUL.
	mustLoad(t, m, Config{Kernel: image, CPUs: 1})
	if got := guest(t, m, cmdlineAddr, 1); got[0] != 0 {
		t.Errorf("empty command line = %q", got)
	}
	// A huge cmdline_size is capped by the space reserved in low memory.
	image = fakeBzImage(put32(offCmdlineSize, 0xffffffff))
	if _, err := Load(m, Config{Kernel: image, Cmdline: strings.Repeat("x", cmdlineMax), CPUs: 1}); !errors.Is(err, ErrCmdlineTooLong) {
		t.Errorf("%d-byte command line: err = %v", cmdlineMax, err)
	}
}

func TestLoadRejectsCPUCount(t *testing.T) {
	m := plainMemory(t, 64<<20)
	for _, n := range []int{-1, 0, MaxCPUs + 1} {
		if _, err := Load(m, Config{Kernel: fakeBzImage(nil), CPUs: n}); !errors.Is(err, ErrCPUCount) {
			t.Errorf("%d CPUs: err = %v, want ErrCPUCount", n, err)
		}
	}
	mustLoad(t, m, Config{Kernel: fakeBzImage(nil), CPUs: MaxCPUs})
}

func TestLoadRejectsBadImage(t *testing.T) {
	m := plainMemory(t, 64<<20)
	if _, err := Load(m, Config{Kernel: []byte("\x7fELF\x02\x01\x01\x00"), CPUs: 1}); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("ELF: err = %v", err)
	}
}

func TestEntryState64(t *testing.T) {
	m := bigMemory(t, 4<<30)
	s := mustLoad(t, m, Config{Kernel: fakeBzImage(nil), CPUs: 4})
	want := CPUState{
		RIP: fakePref + 0x200, RSP: 0x8ff0, RSI: 0x7000, RFLAGS: 2,
		CR0: 0x80000011, CR3: 0x9000, CR4: 0x20, EFER: 0x500,
		GDT: DescriptorTable{0x500, 47}, IDT: DescriptorTable{0x540, 7},
		CS:  Segment{Limit: 0xffffffff, Selector: 0x10, Type: 0xb, Present: 1, S: 1, L: 1, G: 1},
		DS:  Segment{Limit: 0xffffffff, Selector: 0x18, Type: 0x3, Present: 1, DB: 1, S: 1, G: 1},
		TR:  Segment{Limit: 0x67, Selector: 0x20, Type: 0xb, Present: 1},
		LDT: Segment{Type: 2}, LongMode: true,
	}
	want.ES, want.FS, want.GS, want.SS = want.DS, want.DS, want.DS, want.DS
	if *s != want {
		t.Fatalf("state\n got %+v\nwant %+v", *s, want)
	}
	if s.RFLAGS&(1<<9) != 0 {
		t.Error("interrupts enabled at entry")
	}
	checkGDT(t, m, s, 0x00af9b000000ffff)
	// The identity map covers the kernel, the zero page, the command line,
	// the stack, the MP table and the top of each 2 MiB page up to 4 GiB.
	for _, va := range []uint64{0, 0x7000, 0x8ff0, cmdlineAddr, mpTableAddr, fakePref + 0x200, fakePref + fakeInitSize - 1,
		2<<30 - 1, 3<<30 - 1, 0xfec00000, 1<<32 - 1} {
		if pa, ok := translate(t, m, s.CR3, va); !ok || pa != va {
			t.Errorf("VA %#x -> PA %#x (mapped %v), want identity", va, pa, ok)
		}
	}
	if _, ok := translate(t, m, s.CR3, 1<<32); ok {
		t.Error("4 GiB is mapped; the map should stop at 4 GiB")
	}
}

func TestEntryState32(t *testing.T) {
	m := plainMemory(t, 64<<20)
	s := mustLoad(t, m, Config{Kernel: fakeBzImage(put16(offXloadflags, 0)), CPUs: 1})
	if s.LongMode || s.RIP != fakePref || s.CR0 != CR0PE|CR0ET || s.CR4 != 0 || s.EFER != 0 || s.RSI != zeroPageAddr {
		t.Fatalf("32-bit entry state %+v", *s)
	}
	if s.CS.L != 0 || s.CS.DB != 1 || s.CS.Selector != 0x10 || s.CS.Limit != 0xffffffff || s.DS.Selector != 0x18 || s.SS.Selector != 0x18 {
		t.Fatalf("32-bit segments CS %+v DS %+v", s.CS, s.DS)
	}
	checkGDT(t, m, s, 0x00cf9b000000ffff)
}

// checkGDT verifies the GDT in guest memory: the code descriptor, the flat
// data descriptor, the TSS, and that every selector's descriptor decodes to
// the segment the CPU state carries.
func checkGDT(t *testing.T, m *memory.Memory, s *CPUState, code uint64) {
	t.Helper()
	g := guest(t, m, s.GDT.Base, uint64(s.GDT.Limit)+1)
	for sel, want := range map[int]uint64{0: 0, 8: 0, 0x10: code, 0x18: 0x00cf93000000ffff, 0x20: 0x00008b0000000067, 0x28: 0} {
		if got := le.Uint64(g[sel:]); got != want {
			t.Errorf("GDT[%#x] = %#016x, want %#016x", sel, got, want)
		}
	}
	for _, seg := range []Segment{s.CS, s.DS, s.ES, s.FS, s.GS, s.SS, s.TR} {
		if got := decode(le.Uint64(g[seg.Selector:]), seg.Selector); got != seg {
			t.Errorf("selector %#x: GDT holds %+v, state has %+v", seg.Selector, got, seg)
		}
	}
}

// decode is the inverse of descriptor, as a CPU loading a selector sees it.
func decode(d uint64, sel uint16) Segment {
	s := Segment{
		Base:     d>>16&0xffffff | (d>>56&0xff)<<24,
		Limit:    uint32(d&0xffff | (d>>48&0xf)<<16),
		Selector: sel,
		Type:     uint8(d >> 40 & 0xf),
		S:        uint8(d >> 44 & 1),
		DPL:      uint8(d >> 45 & 3),
		Present:  uint8(d >> 47 & 1),
		AVL:      uint8(d >> 52 & 1),
		L:        uint8(d >> 53 & 1),
		DB:       uint8(d >> 54 & 1),
		G:        uint8(d >> 55 & 1),
	}
	if s.G == 1 {
		s.Limit = s.Limit<<12 | 0xfff
	}
	return s
}

// translate walks 4-level page tables in guest memory like the MMU.
func translate(t *testing.T, m *memory.Memory, cr3, va uint64) (uint64, bool) {
	t.Helper()
	table := cr3 &^ 0xfff
	for level, shift := 4, uint(39); level >= 1; level, shift = level-1, shift-9 {
		e := le.Uint64(guest(t, m, table+(va>>shift&0x1ff)*8, 8))
		if e&1 == 0 {
			return 0, false
		}
		if e&2 == 0 {
			t.Errorf("level %d entry for %#x not writable", level, va)
		}
		addr := e & 0x000ffffffffff000
		if level == 1 || (level <= 3 && e&0x80 != 0) {
			return addr&^(1<<shift-1) | va&(1<<shift-1), true
		}
		table = addr
	}
	return 0, false
}

func TestRealKernelLoad(t *testing.T) {
	_, data := realKernel(t)
	m := bigMemory(t, 4<<30)
	initrd := make([]byte, 40<<20)
	s := mustLoad(t, m, Config{Kernel: data, Initrd: initrd, Cmdline: "console=ttyS0 reboot=k panic=1", CPUs: 4})
	h, _ := ParseBzImage(data)
	if s.RIP != h.PrefAddress+0x200 || !s.LongMode {
		t.Errorf("entry %#x (long %v), want pref_address %#x + 0x200", s.RIP, s.LongMode, h.PrefAddress)
	}
	bp := zeroPageOf(t, m)
	addr := uint64(le.Uint32(bp[0x218:]))
	if addr < h.PrefAddress+uint64(h.InitSize) || addr+uint64(len(initrd)) > uint64(h.InitrdAddrMax)+1 {
		t.Errorf("initrd at %#x overlaps the kernel or passes initrd_addr_max", addr)
	}
	// The 64-bit entry point's first bytes are code from the image.
	if got := guest(t, m, s.RIP, 16); !bytes.Equal(got, data[h.SetupSize+0x200:h.SetupSize+0x210]) {
		t.Error("64-bit entry point does not hold the image's code")
	}
}
