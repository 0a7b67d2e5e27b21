package queue

import (
	"errors"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
	"golang.org/x/sys/unix"
)

const (
	next  = virtiotest.Next
	write = virtiotest.Write
	indir = virtiotest.Indirect
)

// desc is one descriptor for a test table.
type td struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

// popWith writes descs into the table, posts head and pops it.
func popWith(t *testing.T, features uint64, head uint16, descs ...td) (*Chain, error) {
	t.Helper()
	_, d, q := setup(t, 8, features)
	for i, x := range descs {
		d.WriteDesc(uint16(i), x.addr, x.len, x.flags, x.next)
	}
	d.Post(head)
	var c Chain
	ok, err := q.Pop(&c)
	if err == nil && !ok {
		t.Fatal("Pop returned nothing for a posted chain")
	}
	return &c, err
}

const buf = virtiotest.Base + 0x8000 // a free spot in test guest RAM

func TestChainValidation(t *testing.T) {
	end := uint64(virtiotest.Base + 1<<20)
	for _, tc := range []struct {
		name     string
		features uint64
		head     uint16
		descs    []td
		want     error
	}{
		{"head out of range", 0, 8, []td{{buf, 1, 0, 0}}, ErrDescIndex},
		{"next out of range", 0, 0, []td{{buf, 1, next, 8}}, ErrDescIndex},
		{"buffer below RAM", 0, 0, []td{{0x1000, 16, 0, 0}}, ErrDescBuffer},
		{"buffer straddles end", 0, 0, []td{{end - 8, 16, 0, 0}}, ErrDescBuffer},
		{"buffer address wraps", 0, 0, []td{{1<<64 - 8, 16, 0, 0}}, ErrDescBuffer},
		{"zero-length buffer outside RAM", 0, 0, []td{{0x10, 0, 0, 0}}, ErrDescBuffer},
		{"self loop", 0, 0, []td{{buf, 1, next, 0}}, ErrChainLength},
		{"loop", 0, 0, []td{{buf, 1, next, 1}, {buf, 1, next, 2}, {buf, 1, next, 1}}, ErrChainLength},
		{"readable after writable", 0, 0, []td{{buf, 1, write | next, 1}, {buf, 1, 0, 0}}, ErrDescOrder},
		{"readable after empty writable", 0, 0, []td{{buf, 0, write | next, 1}, {buf, 1, 0, 0}}, ErrDescOrder},
		{"indirect not negotiated", 0, 0, []td{{buf, 16, indir, 0}}, ErrIndirect},
		{"indirect with next", featIndirect, 0, []td{{buf, 16, indir | next, 1}, {buf, 1, 0, 0}}, ErrIndirect},
		{"indirect length not multiple of 16", featIndirect, 0, []td{{buf, 24, indir, 0}}, ErrIndirect},
		{"indirect length zero", featIndirect, 0, []td{{buf, 0, indir, 0}}, ErrIndirect},
		{"indirect table outside RAM", featIndirect, 0, []td{{end - 16, 32, indir, 0}}, ErrIndirect},
		{"indirect table too big", featIndirect, 0, []td{{buf, 16 * (MaxSize + 1), indir, 0}}, ErrIndirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := popWith(t, tc.features, tc.head, tc.descs...)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want %v (and ErrMalformed)", err, tc.want)
			}
		})
	}
}

func TestChainLengthLimit(t *testing.T) {
	// A chain using every descriptor once is fine; the limit only stops loops.
	var descs []td
	for i := range 8 {
		descs = append(descs, td{buf, 1, next, uint16(i + 1)})
	}
	descs[7].flags = 0
	c, err := popWith(t, 0, 0, descs...)
	if err != nil || c.ReadLen != 8 {
		t.Fatalf("8-descriptor chain in a size-8 queue: %v, read %d", err, c.ReadLen)
	}
}

// writeIndirect writes an indirect table at gpa.
func writeIndirect(g *virtiotest.Guest, gpa uint64, descs ...td) {
	for i, x := range descs {
		virtiotest.WriteDescAt(g, gpa, uint16(i), x.addr, x.len, x.flags, x.next)
	}
}

func TestIndirect(t *testing.T) {
	const table = virtiotest.Base + 0x9000
	cases := []struct {
		name  string
		table []td
		want  error
	}{
		{"ok", []td{{buf, 12, next, 1}, {buf + 100, 100, next | write, 2}, {buf + 200, 50, write, 0}}, nil},
		{"nested", []td{{buf, 12, next, 1}, {table, 16, indir, 0}}, ErrIndirect},
		{"loop inside table", []td{{buf, 1, next, 1}, {buf, 1, next, 0}}, ErrChainLength},
		{"next past table", []td{{buf, 1, next, 3}, {buf, 1, 0, 0}}, ErrDescIndex},
		{"order inside table", []td{{buf, 1, write | next, 1}, {buf, 1, 0, 0}}, ErrDescOrder},
		{"buffer outside RAM", []td{{0x20, 1, 0, 0}}, ErrDescBuffer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, d, q := setup(t, 8, featIndirect)
			writeIndirect(g, table, tc.table...)
			// A direct readable descriptor, then the indirect table; the
			// indirect descriptor's WRITE flag must be ignored.
			d.WriteDesc(0, buf+500, 4, next, 1)
			d.WriteDesc(1, table, uint32(16*len(tc.table)), indir|write, 0)
			d.Post(0)
			var c Chain
			_, err := q.Pop(&c)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ReadLen != 16 || c.WriteLen != 150 || len(c.Readable) != 2 || len(c.Writable) != 2 {
				t.Fatalf("chain: read %d in %d, write %d in %d", c.ReadLen, len(c.Readable), c.WriteLen, len(c.Writable))
			}
		})
	}
}

func TestChainTotalLengthOverflow(t *testing.T) {
	// Two 3 GiB descriptors over the same never-touched mapping: each is
	// inside RAM, their sum is not a valid 32-bit used length.
	const size = 3 << 30
	host, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatalf("mmap 3 GiB NORESERVE: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(host) })
	mem, err := memory.FromRegions(memory.Region{GuestPhys: 0, Host: host})
	if err != nil {
		t.Fatal(err)
	}
	const descAt, availAt, usedAt = 0x1000, 0x2000, 0x3000
	g := virtiotest.NewGuestOn(t, mem)
	virtiotest.WriteDescAt(g, descAt, 0, 0, size, next, 1)
	virtiotest.WriteDescAt(g, descAt, 1, 0, size, 0, 0)
	g.Store16(availAt+4, 0) // ring[0] = head 0
	g.Store16(availAt+2, 1) // avail idx
	q, err := New(mem, virtioQueue(2, descAt, availAt, usedAt), 0)
	if err != nil {
		t.Fatal(err)
	}
	var c Chain
	if _, err := q.Pop(&c); !errors.Is(err, ErrChainSize) {
		t.Fatalf("err = %v, want ErrChainSize", err)
	}
	// One 3 GiB descriptor is fine.
	virtiotest.WriteDescAt(g, descAt, 0, 0, size, 0, 0)
	if ok, err := q.Pop(&c); !ok || err != nil || c.ReadLen != size {
		t.Fatalf("single 3 GiB descriptor: %v, %v", ok, err)
	}
}

func TestChainReuseDropsOldSegments(t *testing.T) {
	_, d, q := setup(t, 8, 0)
	d.AddChain(virtiotest.Buf{Data: []byte("a")}, virtiotest.Buf{Data: []byte("b")}, virtiotest.Buf{Len: 2, Write: true})
	d.AddChain(virtiotest.Buf{Len: 5, Write: true})
	var c Chain
	q.Pop(&c)
	q.Pop(&c)
	if c.ReadLen != 0 || len(c.Readable) != 0 || c.WriteLen != 5 || len(c.Writable) != 1 {
		t.Fatalf("reused chain kept old state: %+v", c)
	}
}
