// Package bus dispatches guest port I/O and MMIO accesses to the devices
// that registered the address ranges. One Bus serves the port-I/O space and
// one the MMIO space; vCPUs look devices up concurrently while PCI BARs may
// move them.
package bus

import (
	"fmt"
	"sort"
	"sync"
)

// Device handles accesses to its range. offset is relative to the range's
// base; len(data) is the access width (1, 2, 4 or 8). Read fills data.
// Devices must tolerate any offset and width inside their range: the guest
// chooses them.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

type entry struct {
	base, size uint64
	dev        Device
}

// Bus is a set of non-overlapping address ranges. The zero value is empty
// and ready to use.
type Bus struct {
	mu      sync.RWMutex
	entries []entry // sorted by base
}

// Register adds dev at [base, base+size).
func (b *Bus) Register(base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("register device at %#x size %#x: bad range", base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base >= base })
	if i > 0 && b.entries[i-1].base+b.entries[i-1].size > base ||
		i < len(b.entries) && base+size > b.entries[i].base {
		return fmt.Errorf("register device at %#x size %#x: overlaps another device", base, size)
	}
	b.entries = append(b.entries, entry{})
	copy(b.entries[i+1:], b.entries[i:])
	b.entries[i] = entry{base, size, dev}
	return nil
}

// Unregister removes the range that starts at base, if any, and reports
// whether there was one.
func (b *Bus) Unregister(base uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base >= base })
	if i == len(b.entries) || b.entries[i].base != base {
		return false
	}
	b.entries = append(b.entries[:i], b.entries[i+1:]...)
	return true
}

func (b *Bus) find(addr uint64, n int) (Device, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base > addr }) - 1
	if i < 0 {
		return nil, 0, false
	}
	e := b.entries[i]
	off := addr - e.base
	if off+uint64(n) > e.size {
		return nil, 0, false
	}
	return e.dev, off, true
}

// Read dispatches a read and reports whether a device claimed it. An
// access that straddles the end of a range is not claimed.
func (b *Bus) Read(addr uint64, data []byte) bool {
	dev, off, ok := b.find(addr, len(data))
	if ok {
		dev.Read(off, data)
	}
	return ok
}

// Write dispatches a write and reports whether a device claimed it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	dev, off, ok := b.find(addr, len(data))
	if ok {
		dev.Write(off, data)
	}
	return ok
}
