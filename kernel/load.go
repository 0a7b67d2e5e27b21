package kernel

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// Errors from Load besides the header errors, matched with errors.Is.
var (
	// ErrCmdlineTooLong: the command line exceeds the kernel's cmdline_size.
	ErrCmdlineTooLong = errors.New("kernel command line too long")
	// ErrInitrdTooLarge: the initrd does not fit in guest RAM below the
	// kernel's initrd_addr_max.
	ErrInitrdTooLarge = errors.New("initrd does not fit in guest memory")
	// ErrKernelTooLarge: the kernel's runtime footprint (init_size) does not
	// fit in guest RAM at its load address.
	ErrKernelTooLarge = errors.New("kernel does not fit in guest memory")
	// ErrCPUCount: the vCPU count is outside 1..MaxCPUs.
	ErrCPUCount = errors.New("unsupported vCPU count")
	// ErrMemoryLayout: guest RAM does not have the shape the boot protocol needs.
	ErrMemoryLayout = errors.New("unsupported guest memory layout")
)

// Config is what to boot.
type Config struct {
	Kernel  []byte // bzImage file contents
	Initrd  []byte // initramfs contents; may be empty
	Cmdline string
	CPUs    int // vCPUs to describe in the MP table, 1..MaxCPUs
}

// Load puts the kernel, initrd, command line, zero page, MP table, page
// tables and GDT into guest memory and returns the boot vCPU's entry state.
// It checks everything before writing anything.
func Load(mem *memory.Memory, cfg Config) (*CPUState, error) {
	h, err := ParseBzImage(cfg.Kernel)
	if err != nil {
		return nil, err
	}
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return nil, fmt.Errorf("%w: %d vCPUs, the boot tables describe 1 to %d", ErrCPUCount, cfg.CPUs, MaxCPUs)
	}
	if len(cfg.Cmdline) > int(min(h.CmdlineSize, cmdlineMax-1)) {
		return nil, fmt.Errorf("%w: %d bytes, the kernel accepts at most %d",
			ErrCmdlineTooLong, len(cfg.Cmdline), min(h.CmdlineSize, cmdlineMax-1))
	}
	if i := strings.IndexByte(cfg.Cmdline, 0); i >= 0 {
		return nil, fmt.Errorf("kernel command line has a NUL byte at offset %d", i)
	}
	e820, err := e820Map(mem)
	if err != nil {
		return nil, err
	}
	lay, err := placeKernel(mem, h)
	if err != nil {
		return nil, err
	}
	initrdAddr, err := placeInitrd(mem, h, lay.end, uint64(len(cfg.Initrd)))
	if err != nil {
		return nil, err
	}
	mp, err := mpTable(mpTableAddr, cfg.CPUs)
	if err != nil {
		return nil, err
	}
	long := h.Has64BitEntry()
	state := entryState(lay.load, long)
	zp := zeroPage{
		header:      cfg.Kernel[hdrOffset:h.HeaderEnd],
		code32Start: uint32(lay.load),
		cmdlinePtr:  cmdlineAddr,
		initrdAddr:  initrdAddr,
		initrdSize:  uint64(len(cfg.Initrd)),
		e820:        e820,
	}
	if len(cfg.Initrd) == 0 {
		zp.initrdAddr = 0
	}

	cmdline := make([]byte, cmdlineMax) // zero-filled: NUL-terminated
	copy(cmdline, cfg.Cmdline)
	writes := []struct {
		what string
		gpa  uint64
		data []byte
	}{
		{"GDT", gdtAddr, gdt(state.CS, state.DS, state.TR)},
		{"IDT", idtAddr, make([]byte, 8)},
		{"zero page", zeroPageAddr, zp.build()},
		{"page tables", pml4Addr, pageTables()},
		{"command line", cmdlineAddr, cmdline},
		{"MP table", mpTableAddr, mp},
		{"kernel", lay.load, cfg.Kernel[h.SetupSize:]},
		{"initrd", initrdAddr, cfg.Initrd},
	}
	for _, w := range writes {
		if len(w.data) == 0 {
			continue
		}
		dst, err := mem.Slice(w.gpa, uint64(len(w.data)))
		if err != nil {
			return nil, fmt.Errorf("write %s at %#x: %w", w.what, w.gpa, err)
		}
		copy(dst, w.data)
	}
	return state, nil
}

// kernelLayout is where the protected-mode kernel goes.
type kernelLayout struct {
	load uint64 // where the protected-mode code is copied
	run  uint64 // where the kernel decompresses itself and runs
	end  uint64 // first byte after everything the kernel occupies early on
}

// placeKernel picks the load address: pref_address (or 1 MiB before
// protocol 2.10), aligned to kernel_alignment if the kernel is relocatable.
// A relocatable kernel then runs at max(load aligned up, pref_address) and a
// non-relocatable one at pref_address; from there it needs init_size bytes
// (boot.rst, init_size). All of it must be RAM in one region below 4 GiB.
func placeKernel(mem *memory.Memory, h *Header) (kernelLayout, error) {
	load := uint64(highMemory)
	if h.PrefAddress >= highMemory {
		load = h.PrefAddress
	}
	if h.Relocatable {
		load = alignUp(load, uint64(h.KernelAlignment))
	}
	run := load
	if h.PrefAddress != 0 && (!h.Relocatable || run < h.PrefAddress) {
		run = h.PrefAddress
	}
	payload := uint64(h.PayloadSize)
	runEnd := run + max(uint64(h.InitSize), payload)
	end := alignUp(max(load+payload, runEnd), pageSize)
	start := min(load, run)
	if end > 1<<32 {
		return kernelLayout{}, fmt.Errorf("%w: it needs %d MiB at %#x (init_size %d MiB), which runs past 4 GiB",
			ErrKernelTooLarge, mib(end-start), start, mib(uint64(h.InitSize)))
	}
	if _, err := mem.Slice(start, end-start); err != nil {
		return kernelLayout{}, fmt.Errorf("%w: it needs %d MiB of RAM at %#x (init_size %d MiB), guest RAM below 4 GiB ends at %#x",
			ErrKernelTooLarge, mib(end-start), start, mib(uint64(h.InitSize)), lowRAMEnd(mem))
	}
	return kernelLayout{load: load, run: run, end: end}, nil
}

// placeInitrd returns the highest page-aligned address for an initrd of
// size bytes that ends at or below both initrd_addr_max+1 and the top of a
// RAM region below 4 GiB, and starts above the kernel (kernelEnd).
func placeInitrd(mem *memory.Memory, h *Header, kernelEnd, size uint64) (uint64, error) {
	if size == 0 {
		return 0, nil
	}
	limit := min(uint64(h.InitrdAddrMax)+1, 1<<32)
	regions := mem.Regions()
	var room uint64 // largest space found, for the error
	for i := len(regions) - 1; i >= 0; i-- {
		r := regions[i]
		top := min(r.End(), limit)
		floor := max(r.GuestPhys, kernelEnd)
		if top <= floor {
			continue
		}
		room = max(room, alignDown(top, pageSize)-alignUp(floor, pageSize))
		if top-floor < size {
			continue
		}
		if addr := alignDown(top-size, pageSize); addr >= floor {
			return addr, nil
		}
	}
	return 0, fmt.Errorf("%w: the initrd is %d MiB (%d bytes) but only %d MiB are free between the kernel's end at %#x and %#x (initrd_addr_max %#x, guest RAM below 4 GiB ends at %#x); give the guest more memory",
		ErrInitrdTooLarge, mib(size), size, mib(room), kernelEnd, limit, h.InitrdAddrMax, lowRAMEnd(mem))
}

// lowRAMEnd is the end of the highest RAM region starting below 4 GiB.
func lowRAMEnd(mem *memory.Memory) uint64 {
	var end uint64
	for _, r := range mem.Regions() {
		if r.GuestPhys < 1<<32 {
			end = r.End()
		}
	}
	return end
}

func alignUp(v, a uint64) uint64   { return (v + a - 1) &^ (a - 1) }
func alignDown(v, a uint64) uint64 { return v &^ (a - 1) }
func mib(v uint64) uint64          { return (v + 1<<20 - 1) >> 20 }
