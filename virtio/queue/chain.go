package queue

import (
	"encoding/binary"
	"math"
)

// Chain is one descriptor chain taken from the available ring: its head
// index (to return it with AddUsed) and its buffers as host memory, split
// into the device-readable part (first) and the device-writable part.
// Segments alias guest RAM; the device must stop using them once the chain
// is returned to the used ring. Zero-length descriptors yield no segment.
type Chain struct {
	Head     uint16
	Readable [][]byte
	Writable [][]byte
	// ReadLen and WriteLen are the total lengths of Readable and Writable.
	ReadLen, WriteLen uint32
}

func (c *Chain) reset(head uint16) {
	clear(c.Readable) // drop references to guest memory
	clear(c.Writable)
	*c = Chain{Head: head, Readable: c.Readable[:0], Writable: c.Writable[:0]}
}

// desc is a decoded struct virtq_desc.
type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func readDesc(table []byte, i uint16) desc {
	b := table[int(i)*DescSize:][:DescSize]
	return desc{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}

// walk fills c with the chain starting at head, validating every
// descriptor: index inside its table, buffer inside guest RAM, total length
// within 32 bits, at most one table's worth of descriptors (so no loops),
// readable before writable, and indirect tables well formed (negotiated,
// length a non-zero multiple of 16 inside RAM, not combined with NEXT, not
// nested).
func (q *Queue) walk(head uint16, c *Chain) error {
	c.reset(head)
	if head >= q.size {
		return q.malformed(ErrDescIndex, "chain head %d, queue size %d", head, q.size)
	}
	var total uint64
	table, n, i := q.desc, uint32(q.size), head
	indirect, sawWrite := false, false
	for count := uint32(1); ; count++ {
		if count > n {
			return q.malformed(ErrChainLength, "chain at head %d has more than %d descriptors", head, n)
		}
		d := readDesc(table, i)
		if d.flags&DescFIndirect != 0 {
			switch {
			case indirect:
				return q.malformed(ErrIndirect, "nested indirect descriptor in chain at head %d", head)
			case !q.indirect:
				return q.malformed(ErrIndirect, "indirect descriptor at head %d but INDIRECT_DESC not negotiated", head)
			case d.flags&DescFNext != 0:
				return q.malformed(ErrIndirect, "indirect descriptor %d at head %d also has NEXT", i, head)
			case d.len == 0 || d.len%DescSize != 0 || d.len/DescSize > MaxSize:
				return q.malformed(ErrIndirect, "indirect table length %d at head %d (want a non-zero multiple of 16, at most %d entries)", d.len, head, MaxSize)
			}
			t, err := q.mem.Slice(d.addr, uint64(d.len))
			if err != nil {
				return q.malformed(ErrIndirect, "indirect table at head %d: %v", head, err)
			}
			// The rest of the chain lives in the table, starting at entry 0.
			table, n, i, indirect, count = t, d.len/DescSize, 0, true, 0
			continue
		}
		b, err := q.mem.Slice(d.addr, uint64(d.len))
		if err != nil {
			return q.malformed(ErrDescBuffer, "descriptor %d in chain at head %d: %v", i, head, err)
		}
		total += uint64(d.len)
		if total > math.MaxUint32 {
			return q.malformed(ErrChainSize, "chain at head %d is longer than 4 GiB", head)
		}
		if d.flags&DescFWrite != 0 {
			sawWrite = true
			if d.len > 0 {
				c.Writable = append(c.Writable, b)
			}
			c.WriteLen += d.len
		} else {
			if sawWrite {
				return q.malformed(ErrDescOrder, "descriptor %d in chain at head %d", i, head)
			}
			if d.len > 0 {
				c.Readable = append(c.Readable, b)
			}
			c.ReadLen += d.len
		}
		if d.flags&DescFNext == 0 {
			return nil
		}
		if uint32(d.next) >= n {
			return q.malformed(ErrDescIndex, "descriptor %d in chain at head %d points to %d, table has %d", i, head, d.next, n)
		}
		i = d.next
	}
}
