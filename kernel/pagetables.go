package kernel

import "encoding/binary"

// Page table entry bits and sizes for 4-level paging.
const (
	pageTableFlags  = 0x3  // present | writable
	pageLargeFlags  = 0x83 // present | writable | page size (2 MiB in a page directory)
	largePageSize   = 2 << 20
	entriesPerTable = 512
)

// pageTables returns PML4, PDPT and pdCount page directories, laid out
// contiguously from pml4Addr, identity-mapping [0, 4 GiB) with 2 MiB pages
// (1 GiB pages would need pdpe1gb, which not every nested CPU model has).
func pageTables() []byte {
	b := make([]byte, (2+pdCount)*pageSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], pdptAddr|pageTableFlags)
	pdpt := b[pdptAddr-pml4Addr:]
	for i := range pdCount {
		le.PutUint64(pdpt[i*8:], uint64(pdAddr+i*pageSize)|pageTableFlags)
	}
	pd := b[pdAddr-pml4Addr:]
	for i := range pdCount * entriesPerTable {
		le.PutUint64(pd[i*8:], uint64(i)*largePageSize|pageLargeFlags)
	}
	return b
}
