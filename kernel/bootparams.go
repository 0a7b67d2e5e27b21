package kernel

import (
	"encoding/binary"
	"fmt"

	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// Offsets in struct boot_params (the zero page) outside the setup header,
// named after the fields in arch/x86/include/uapi/asm/bootparam.h. The setup
// header sits at hdrOffset (0x1f1) with the same offsets as in the file.
const (
	bpExtRamdiskImage = 0x0c0 // u32, bits 63:32 of the initrd address
	bpExtRamdiskSize  = 0x0c4 // u32, bits 63:32 of the initrd size
	bpExtCmdLinePtr   = 0x0c8 // u32, bits 63:32 of the command line address
	bpE820Entries     = 0x1e8 // u8, number of e820_table entries
	bpSentinel        = 0x1ef // u8, must stay 0 in a clean zero page
	bpE820Table       = 0x2d0 // struct boot_e820_entry[E820_MAX_ENTRIES_ZEROPAGE]
	bpE820TableEnd    = 0xcd0
	e820EntrySize     = 20 // packed {u64 addr; u64 size; u32 type}
	e820MaxZeroPage   = 128
)

// E820 memory types (arch/x86/include/asm/e820/types.h).
const (
	E820RAM      = 1 // E820_TYPE_RAM
	E820Reserved = 2 // E820_TYPE_RESERVED
)

// E820Entry is one range of the guest's BIOS memory map.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

func (e E820Entry) String() string {
	return fmt.Sprintf("[%#x-%#x) type %d", e.Addr, e.Addr+e.Size, e.Type)
}

// e820Map describes guest RAM as the kernel should see it: every RAM region,
// with [ebdaStart, 1 MiB) of the first one reserved for the EBDA and the
// legacy BIOS/VGA area. The PCI hole is absent because no region covers it.
func e820Map(mem *memory.Memory) ([]E820Entry, error) {
	regions := mem.Regions()
	if len(regions) == 0 || regions[0].GuestPhys != 0 || regions[0].End() < lowMemoryNeed {
		return nil, fmt.Errorf("%w: guest RAM must start at 0 and cover the first MiB", ErrMemoryLayout)
	}
	var out []E820Entry
	for _, r := range regions {
		if r.GuestPhys != 0 {
			out = append(out, E820Entry{r.GuestPhys, uint64(len(r.Host)), E820RAM})
			continue
		}
		out = append(out,
			E820Entry{0, ebdaStart, E820RAM},
			E820Entry{ebdaStart, highMemory - ebdaStart, E820Reserved})
		if r.End() > highMemory {
			out = append(out, E820Entry{highMemory, r.End() - highMemory, E820RAM})
		}
	}
	if len(out) > e820MaxZeroPage {
		return nil, fmt.Errorf("%w: %d e820 entries, the zero page holds %d", ErrMemoryLayout, len(out), e820MaxZeroPage)
	}
	return out, nil
}

// zeroPage is what Load puts in struct boot_params besides the copied setup
// header.
type zeroPage struct {
	header      []byte // setup header bytes from the image, file offsets [0x1f1, HeaderEnd)
	code32Start uint32
	cmdlinePtr  uint64
	initrdAddr  uint64
	initrdSize  uint64
	e820        []E820Entry
}

// Values the loader sets in the setup header (boot.rst, "Details of header
// fields" and "Sample boot configuration").
const (
	typeOfLoaderUndefined = 0xff   // type_of_loader: no registered loader ID
	vidModeNormal         = 0xffff // vid_mode: "normal" VGA
	heapEnd               = 0xe000 // end of the real-mode heap, setup segment relative
	heapEndPtr            = heapEnd - 0x200
)

// build returns the 4 KiB zero page: zeroed, the image's setup header copied
// in, then the loader's fields set.
func (z *zeroPage) build() []byte {
	bp := make([]byte, zeroPageSize)
	copy(bp[hdrOffset:min(hdrOffset+len(z.header), bpE820Table)], z.header)
	le := binary.LittleEndian
	bp[offTypeOfLoader] = typeOfLoaderUndefined
	bp[offLoadflags] |= CanUseHeap
	le.PutUint16(bp[offVidMode:], vidModeNormal)
	le.PutUint16(bp[offHeapEndPtr:], heapEndPtr)
	le.PutUint32(bp[offCode32Start:], z.code32Start)
	le.PutUint32(bp[offCmdLinePtr:], uint32(z.cmdlinePtr))
	le.PutUint32(bp[bpExtCmdLinePtr:], uint32(z.cmdlinePtr>>32))
	le.PutUint32(bp[offRamdiskImage:], uint32(z.initrdAddr))
	le.PutUint32(bp[bpExtRamdiskImage:], uint32(z.initrdAddr>>32))
	le.PutUint32(bp[offRamdiskSize:], uint32(z.initrdSize))
	le.PutUint32(bp[bpExtRamdiskSize:], uint32(z.initrdSize>>32))
	bp[bpSentinel] = 0
	bp[bpE820Entries] = uint8(len(z.e820))
	for i, e := range z.e820 {
		off := bpE820Table + i*e820EntrySize
		le.PutUint64(bp[off:], e.Addr)
		le.PutUint64(bp[off+8:], e.Size)
		le.PutUint32(bp[off+16:], e.Type)
	}
	return bp
}
