// Package kernel loads a Linux x86 bzImage into guest memory following the
// x86 boot protocol (Documentation/arch/x86/boot.rst): it validates the
// setup header, copies the protected-mode kernel, the initrd and the command
// line, fills the zero page (struct boot_params) with an e820 map, writes an
// Intel MP table describing the vCPUs and the IOAPIC, builds identity page
// tables and a GDT, and returns the register state for the boot vCPU.
//
// The package only writes guest memory through memory.Memory; it knows
// nothing about KVM. The other vCPUs are left to the in-kernel local APIC:
// they wait for INIT/SIPI from the boot CPU.
package kernel

// The guest's low memory map. Every fixed guest-physical address this
// package uses is here. Everything below 1 MiB except [ebdaStart, highMemory)
// is usable RAM in the e820 map: Linux reserves the tables it still needs
// (boot_params, the MP table) itself and reuses the rest once it runs.
//
//	0x00000-0x004ff  real-mode IVT and BIOS data area (left zero)
//	0x00500-0x0052f  boot GDT: null, null, code 0x10, data 0x18, TSS 0x20 (16 bytes)
//	0x00540-0x00547  boot IDT (one empty gate; interrupts stay off until Linux loads its own)
//	0x07000-0x07fff  zero page (struct boot_params), RSI at entry
//	0x08000-0x08fff  boot stack, RSP = 0x8ff0
//	0x09000-0x09fff  PML4
//	0x0a000-0x0afff  PDPT
//	0x0b000-0x0efff  4 page directories of 2 MiB pages: identity map of 0-4 GiB
//	0x20000-0x2ffff  kernel command line (NUL-terminated)
//	0x9fc00-0x9ffff  EBDA: MP floating pointer, MP config table (may run past 0xa0000 for many CPUs)
//	0x9fc00-0xfffff  e820 reserved (EBDA, VGA, option and BIOS ROMs)
//	0x100000-        kernel (at pref_address, usually 16 MiB), initrd as high as allowed below 4 GiB
const (
	gdtAddr       = 0x500
	idtAddr       = 0x540
	zeroPageAddr  = 0x7000
	zeroPageSize  = 0x1000
	bootStackTop  = 0x8ff0
	pml4Addr      = 0x9000
	pdptAddr      = 0xa000
	pdAddr        = 0xb000
	pdCount       = 4 // page directories, 1 GiB each
	cmdlineAddr   = 0x20000
	cmdlineMax    = 0x10000 // bytes reserved for the command line, NUL included
	mpTableAddr   = 0x9fc00 // where Linux scans: the last KiB of 640 KiB base memory
	ebdaStart     = 0x9fc00
	highMemory    = 0x100000 // 1 MiB
	pageSize      = 0x1000
	lowMemoryNeed = highMemory // RAM region 0 must cover at least [0, 1 MiB)
)

// Selectors of the boot GDT. The boot protocol requires __BOOT_CS = 0x10
// and __BOOT_DS = 0x18 for both the 32-bit and the 64-bit entry.
const (
	selectorCode = 0x10
	selectorData = 0x18
	selectorTSS  = 0x20
)
