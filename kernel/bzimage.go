package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors from ParseBzImage, matched with errors.Is. The returned errors wrap
// one of these and say what exactly is wrong.
var (
	// ErrNotBzImage: the file is not a Linux x86 bzImage (no "HdrS" magic,
	// no 0xAA55 boot flag, an ELF vmlinux, or an old zImage).
	ErrNotBzImage = errors.New("not a Linux x86 bzImage")
	// ErrProtocolTooOld: the image speaks a boot protocol older than
	// MinProtocol.
	ErrProtocolTooOld = errors.New("boot protocol too old")
	// ErrTruncated: the file ends before the header or the setup code does.
	ErrTruncated = errors.New("bzImage truncated")
	// ErrBadHeader: a header field holds a value no real kernel has.
	ErrBadHeader = errors.New("bzImage header invalid")
)

// MinProtocol is the oldest boot protocol Load accepts (2.06, Linux 2.6.22):
// it is the first with cmdline_size, and everything older predates the
// kernels anyone boots in a microVM.
const MinProtocol = 0x0206

// Offsets into the bzImage file (and into struct boot_params, which starts
// with the same layout for the setup header). Names follow struct
// setup_header in arch/x86/include/uapi/asm/bootparam.h.
const (
	hdrOffset            = 0x1f1 // struct setup_header hdr
	offSetupSects        = 0x1f1 // u8
	offSyssize           = 0x1f4 // u32, protected-mode size in 16-byte units
	offVidMode           = 0x1fa // u16
	offBootFlag          = 0x1fe // u16, 0xAA55
	offJump              = 0x200 // u16, jmp short; byte 0x201 sizes the header
	offHeader            = 0x202 // u32, "HdrS"
	offVersion           = 0x206 // u16, boot protocol version
	offTypeOfLoader      = 0x210 // u8
	offLoadflags         = 0x211 // u8
	offCode32Start       = 0x214 // u32
	offRamdiskImage      = 0x218 // u32
	offRamdiskSize       = 0x21c // u32
	offHeapEndPtr        = 0x224 // u16
	offCmdLinePtr        = 0x228 // u32
	offInitrdAddrMax     = 0x22c // u32
	offKernelAlignment   = 0x230 // u32
	offRelocatableKernel = 0x234 // u8
	offXloadflags        = 0x236 // u16
	offCmdlineSize       = 0x238 // u32
	offHardwareSubarch   = 0x23c // u32
	offPrefAddress       = 0x258 // u64
	offInitSize          = 0x260 // u32
	setupHeaderEnd       = 0x26c // first byte after struct setup_header
	bootFlagMagic        = 0xaa55
	sectorSize           = 512
	defaultSetupSects    = 4 // setup_sects == 0 means 4
	minFileSize          = offVersion + 2
	maxKernelAlignment   = 1 << 30
	protocolPrefAddress  = 0x020a // pref_address, init_size
	protocolXloadflags   = 0x020c // xloadflags
	protocolRelocatable  = 0x0205 // relocatable_kernel
)

// loadflags and xloadflags bits (bootparam.h).
const (
	LoadedHigh            = 1 << 0 // LOADED_HIGH: protected-mode code at 1 MiB (bzImage)
	KASLRFlag             = 1 << 1 // KASLR_FLAG
	QuietFlag             = 1 << 5 // QUIET_FLAG
	KeepSegments          = 1 << 6 // KEEP_SEGMENTS
	CanUseHeap            = 1 << 7 // CAN_USE_HEAP
	XLFKernel64           = 1 << 0 // XLF_KERNEL_64: 64-bit entry at load address + 0x200
	XLFCanBeLoadedAbove4G = 1 << 1 // XLF_CAN_BE_LOADED_ABOVE_4G
)

// Header is the validated setup header of a bzImage: what a loader needs to
// place the kernel, plus where the setup code ends and the protected-mode
// kernel begins.
type Header struct {
	Protocol        uint16 // boot protocol version, 0x020f = 2.15
	SetupSects      int    // real-mode setup sectors (0 in the file is reported as 4)
	Loadflags       uint8
	Xloadflags      uint16 // 0 before protocol 2.12
	Relocatable     bool   // relocatable_kernel
	KernelAlignment uint32 // required load alignment if relocatable
	PrefAddress     uint64 // preferred load address (0 before 2.10)
	InitSize        uint32 // linear memory the kernel needs from its runtime start (0 before 2.10)
	InitrdAddrMax   uint32 // highest address the initrd may occupy
	CmdlineSize     uint32 // longest command line, terminating NUL excluded
	Syssize         uint32 // protected-mode code size in 16-byte units

	// SetupSize is the byte size of the boot sector plus setup code,
	// (SetupSects+1)*512: the protected-mode kernel starts there in the file.
	SetupSize int
	// PayloadSize is the size of the protected-mode kernel in the file.
	PayloadSize int
	// HeaderEnd is the offset just past the setup header in the file
	// (0x202 + the byte at 0x201), clamped to what boot_params can hold.
	HeaderEnd int
}

// Has64BitEntry reports whether the kernel has the 64-bit entry point at
// its load address + 0x200 (XLF_KERNEL_64).
func (h *Header) Has64BitEntry() bool { return h.Xloadflags&XLFKernel64 != 0 }

// ProtocolString formats the boot protocol version as "2.15".
func (h *Header) ProtocolString() string { return protocolString(h.Protocol) }

func protocolString(v uint16) string { return fmt.Sprintf("%d.%02d", v>>8, v&0xff) }

// ParseBzImage validates the setup header of a bzImage and returns it. It
// never panics, whatever data holds.
func ParseBzImage(data []byte) (*Header, error) {
	if bytes.HasPrefix(data, []byte("\x7fELF")) {
		return nil, fmt.Errorf("%w: this is an ELF file (an uncompressed vmlinux?); give the bzImage instead (arch/x86/boot/bzImage, or /boot/vmlinuz-* on a distro)", ErrNotBzImage)
	}
	if len(data) < minFileSize {
		return nil, fmt.Errorf("%w: %d bytes, the setup header alone needs %d", ErrTruncated, len(data), minFileSize)
	}
	le := binary.LittleEndian
	if string(data[offHeader:offHeader+4]) != "HdrS" {
		return nil, fmt.Errorf("%w: no \"HdrS\" magic at offset %#x", ErrNotBzImage, offHeader)
	}
	if f := le.Uint16(data[offBootFlag:]); f != bootFlagMagic {
		return nil, fmt.Errorf("%w: boot flag at %#x is %#04x, want %#04x", ErrNotBzImage, offBootFlag, f, bootFlagMagic)
	}
	h := &Header{Protocol: le.Uint16(data[offVersion:])}
	if h.Protocol < MinProtocol {
		return nil, fmt.Errorf("%w: the kernel speaks boot protocol %s, at least %s is needed (Linux 2.6.22 or newer)",
			ErrProtocolTooOld, h.ProtocolString(), protocolString(MinProtocol))
	}
	// From 2.06 on the header reaches at least cmdline_size (0x23c).
	if len(data) < offHardwareSubarch {
		return nil, fmt.Errorf("%w: %d bytes, the protocol %s setup header needs %d",
			ErrTruncated, len(data), h.ProtocolString(), offHardwareSubarch)
	}

	h.SetupSects = int(data[offSetupSects])
	if h.SetupSects == 0 {
		h.SetupSects = defaultSetupSects
	}
	h.SetupSize = (h.SetupSects + 1) * sectorSize
	if h.SetupSize >= len(data) {
		return nil, fmt.Errorf("%w: %d setup sectors (%d bytes) leave no kernel in a %d-byte file",
			ErrTruncated, h.SetupSects, h.SetupSize, len(data))
	}
	h.PayloadSize = len(data) - h.SetupSize
	h.HeaderEnd = min(offHeader+int(data[offJump+1]), setupHeaderEnd, h.SetupSize)
	if h.HeaderEnd < offHardwareSubarch {
		return nil, fmt.Errorf("%w: setup header ends at %#x (jump byte %#02x), before cmdline_size",
			ErrBadHeader, h.HeaderEnd, data[offJump+1])
	}
	// Fields past the header's own declared end read as zero.
	field := func(off, size int, minProto uint16) []byte {
		if h.Protocol < minProto || off+size > h.HeaderEnd {
			return make([]byte, size)
		}
		return data[off : off+size]
	}

	h.Loadflags = data[offLoadflags]
	if h.Loadflags&LoadedHigh == 0 {
		return nil, fmt.Errorf("%w: LOADED_HIGH is clear in loadflags %#02x: a zImage, which must be loaded below 1 MiB, is not supported",
			ErrNotBzImage, h.Loadflags)
	}
	h.Syssize = le.Uint32(data[offSyssize:])
	if uint64(h.Syssize)*16 > uint64(h.PayloadSize) {
		return nil, fmt.Errorf("%w: syssize says %d bytes of kernel, the file holds %d after the setup code",
			ErrTruncated, uint64(h.Syssize)*16, h.PayloadSize)
	}
	h.InitrdAddrMax = le.Uint32(data[offInitrdAddrMax:])
	if h.InitrdAddrMax < 1<<20 {
		return nil, fmt.Errorf("%w: initrd_addr_max %#x is below 1 MiB", ErrBadHeader, h.InitrdAddrMax)
	}
	h.KernelAlignment = le.Uint32(data[offKernelAlignment:])
	h.Relocatable = field(offRelocatableKernel, 1, protocolRelocatable)[0] != 0
	if h.Relocatable {
		a := h.KernelAlignment
		if a < 4096 || a > maxKernelAlignment || a&(a-1) != 0 {
			return nil, fmt.Errorf("%w: kernel_alignment %#x is not a power of two between 4 KiB and 1 GiB", ErrBadHeader, a)
		}
	}
	h.CmdlineSize = le.Uint32(data[offCmdlineSize:])
	if h.CmdlineSize == 0 {
		return nil, fmt.Errorf("%w: cmdline_size is 0", ErrBadHeader)
	}
	h.Xloadflags = le.Uint16(field(offXloadflags, 2, protocolXloadflags))
	h.PrefAddress = le.Uint64(field(offPrefAddress, 8, protocolPrefAddress))
	h.InitSize = le.Uint32(field(offInitSize, 4, protocolPrefAddress))
	if h.PrefAddress%4096 != 0 || (h.PrefAddress != 0 && h.PrefAddress < 1<<20) || h.PrefAddress >= 1<<32 {
		return nil, fmt.Errorf("%w: pref_address %#x is not a page-aligned address between 1 MiB and 4 GiB", ErrBadHeader, h.PrefAddress)
	}
	return h, nil
}
