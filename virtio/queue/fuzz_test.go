package queue

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// Fuzz arena: two RAM regions with a hole between them, so ranges that
// straddle the hole or either end are exercised. The rings are packed at the
// start of the first region (descriptor table, driver ring, device ring) so
// small inputs cover them; the fuzzer controls every byte of RAM.
const (
	fuzzLow     = 0x1_0000
	fuzzLowLen  = 0x1_0000
	fuzzHigh    = 0x3_0000
	fuzzHighLen = 0x1000
	fuzzDesc    = fuzzLow
)

func fuzzLayout(size uint16) (avail, used uint64) {
	avail = fuzzDesc + 16*uint64(size)
	used = (avail + 6 + 2*uint64(size) + 3) &^ 3
	return avail, used
}

func FuzzChainWalk(f *testing.F) {
	f.Add(seedChain(), uint16(0), uint8(3), uint8(3))
	f.Add(seedIndirect(), uint16(0), uint8(3), uint8(3))
	f.Add(make([]byte, 64), uint16(7), uint8(0), uint8(0))
	f.Add(seedChain(), uint16(0), uint8(2), uint8(0)) // queue of 4: head's chain reads as garbage
	f.Fuzz(func(t *testing.T, data []byte, head uint16, sizeLog, flags uint8) {
		low := make([]byte, fuzzLowLen)
		high := make([]byte, fuzzHighLen)
		copy(high, data[copy(low, data):])
		mem, err := memory.FromRegions(
			memory.Region{GuestPhys: fuzzLow, Host: low},
			memory.Region{GuestPhys: fuzzHigh, Host: high})
		if err != nil {
			t.Fatal(err)
		}
		var features uint64
		if flags&1 != 0 {
			features |= 1 << virtio.FeatureIndirectDesc
		}
		if flags&2 != 0 {
			features |= 1 << virtio.FeatureEventIdx
		}
		size := uint16(1) << (sizeLog % 11) // rings fit in the low region
		avail, used := fuzzLayout(size)
		q, err := New(mem, virtio.QueueConfig{Size: size, Desc: fuzzDesc, Driver: avail, Device: used}, features)
		if err != nil {
			t.Fatalf("valid layout rejected: %v", err)
		}
		var c Chain
		if err := q.walk(head, &c); err == nil {
			checkChain(t, &c, low, high)
		}
		// Pop whatever the avail ring (fuzzer-written) offers.
		for range 4 {
			ok, err := q.Pop(&c)
			if err != nil || !ok {
				break
			}
			checkChain(t, &c, low, high)
			if err := q.AddUsed(c.Head, c.WriteLen); err != nil {
				t.Fatalf("AddUsed of a popped head: %v", err)
			}
			q.NeedsInterrupt()
		}
		q.EnableNotify()
	})
}

// checkChain asserts every segment lies inside one of the arena regions and
// the lengths add up.
func checkChain(t *testing.T, c *Chain, regions ...[]byte) {
	t.Helper()
	for _, segs := range []struct {
		s   [][]byte
		len uint32
	}{{c.Readable, c.ReadLen}, {c.Writable, c.WriteLen}} {
		var total uint64
		for _, s := range segs.s {
			total += uint64(len(s))
			if len(s) == 0 {
				t.Fatal("empty segment")
			}
			if !inside(s, regions) {
				t.Fatalf("segment of %d bytes outside the arena", len(s))
			}
		}
		if total != uint64(segs.len) {
			t.Fatalf("segments total %d, length says %d", total, segs.len)
		}
	}
}

func inside(s []byte, regions [][]byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	for _, r := range regions {
		base := uintptr(unsafe.Pointer(unsafe.SliceData(r)))
		if p >= base && p+uintptr(len(s)) <= base+uintptr(len(r)) && p+uintptr(len(s)) >= p {
			return true
		}
	}
	return false
}

func putDesc(b []byte, i int, addr uint64, n uint32, flags, nxt uint16) {
	d := b[fuzzDesc-fuzzLow+16*i:]
	binary.LittleEndian.PutUint64(d, addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], nxt)
}

// seedChain is RAM holding a valid 3-descriptor chain posted at avail idx 1
// in a queue of 8 (sizeLog 3).
func seedChain() []byte {
	avail, _ := fuzzLayout(8)
	b := make([]byte, avail-fuzzLow+6)
	putDesc(b, 0, fuzzLow+0xc000, 12, DescFNext, 1)
	putDesc(b, 1, fuzzHigh, 100, DescFNext|DescFWrite, 2)
	putDesc(b, 2, fuzzLow+0xd000, 200, DescFWrite, 0)
	binary.LittleEndian.PutUint16(b[avail-fuzzLow+2:], 1)
	return b
}

// seedIndirect is RAM with a chain whose head points to an indirect table.
func seedIndirect() []byte {
	avail, _ := fuzzLayout(8)
	b := make([]byte, 0x220)
	putDesc(b, 0, fuzzLow+0x200, 32, DescFIndirect, 0)
	tab := b[0x200:]
	binary.LittleEndian.PutUint64(tab, fuzzLow+0xc000)
	binary.LittleEndian.PutUint32(tab[8:], 12)
	binary.LittleEndian.PutUint16(tab[12:], DescFNext)
	binary.LittleEndian.PutUint16(tab[14:], 1)
	binary.LittleEndian.PutUint64(tab[16:], fuzzHigh)
	binary.LittleEndian.PutUint32(tab[24:], 64)
	binary.LittleEndian.PutUint16(tab[28:], DescFWrite)
	binary.LittleEndian.PutUint16(b[avail-fuzzLow+2:], 1)
	return b
}

// The seeds must be valid chains, or the corpus starts nowhere useful.
func TestFuzzSeedsPop(t *testing.T) {
	for name, b := range map[string][]byte{"chain": seedChain(), "indirect": seedIndirect()} {
		low := make([]byte, fuzzLowLen)
		copy(low, b)
		mem, _ := memory.FromRegions(memory.Region{GuestPhys: fuzzLow, Host: low},
			memory.Region{GuestPhys: fuzzHigh, Host: make([]byte, fuzzHighLen)})
		avail, used := fuzzLayout(8)
		q, err := New(mem, virtio.QueueConfig{Size: 8, Desc: fuzzDesc, Driver: avail, Device: used}, 1<<virtio.FeatureIndirectDesc)
		if err != nil {
			t.Fatal(err)
		}
		var c Chain
		if ok, err := q.Pop(&c); !ok || err != nil || c.ReadLen != 12 || c.WriteLen == 0 {
			t.Errorf("%s seed: %v, %v, chain read %d write %d", name, ok, err, c.ReadLen, c.WriteLen)
		}
	}
}
