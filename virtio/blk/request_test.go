package blk

import (
	"errors"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// chain builds a queue.Chain the way the walker would: readable segments
// first, empty ones dropped.
func chain(readable, writable [][]byte) *queue.Chain {
	c := &queue.Chain{}
	for _, s := range readable {
		if len(s) > 0 {
			c.Readable = append(c.Readable, s)
		}
		c.ReadLen += uint32(len(s))
	}
	for _, s := range writable {
		if len(s) > 0 {
			c.Writable = append(c.Writable, s)
		}
		c.WriteLen += uint32(len(s))
	}
	return c
}

func TestParse(t *testing.T) {
	const sectors = 64
	b := func(n int) []byte { return make([]byte, n) }
	h := header
	for _, c := range []struct {
		name     string
		r, w     [][]byte
		ro       bool
		want     error
		typ      uint32
		len      uint64
		segments int
	}{
		{"read", [][]byte{h(TypeIn, 0)}, [][]byte{b(1024), b(1)}, false, nil, TypeIn, 1024, 1},
		{"read, status in data buffer", [][]byte{h(TypeIn, 0)}, [][]byte{b(512), b(513)}, false, nil, TypeIn, 1024, 2},
		{"read to the last sector", [][]byte{h(TypeIn, 62)}, [][]byte{b(1024), b(1)}, false, nil, TypeIn, 1024, 1},
		{"zero-length read at capacity", [][]byte{h(TypeIn, 64)}, [][]byte{b(1)}, false, nil, TypeIn, 0, 0},
		{"write, header and data together", [][]byte{append(h(TypeOut, 1), b(512)...)}, [][]byte{b(1)}, false, nil, TypeOut, 512, 1},
		{"flush", [][]byte{h(TypeFlush, 0)}, [][]byte{b(1)}, false, nil, TypeFlush, 0, 0},
		{"get id", [][]byte{h(TypeGetID, 0)}, [][]byte{b(20), b(1)}, false, nil, TypeGetID, 20, 1},
		{"no status", [][]byte{h(TypeIn, 0)}, nil, false, ErrNoStatus, 0, 0, 0},
		{"short header", [][]byte{b(15)}, [][]byte{b(1)}, false, ErrShortHeader, 0, 0, 0},
		{"read past the end", [][]byte{h(TypeIn, 63)}, [][]byte{b(1024), b(1)}, false, ErrRange, 0, 0, 0},
		{"read beyond capacity", [][]byte{h(TypeIn, 65)}, [][]byte{b(1)}, false, ErrRange, 0, 0, 0},
		{"sector wraps", [][]byte{h(TypeIn, 1<<64-1)}, [][]byte{b(512), b(1)}, false, ErrRange, 0, 0, 0},
		{"unaligned", [][]byte{h(TypeIn, 0)}, [][]byte{b(511), b(1)}, false, ErrUnaligned, 0, 0, 0},
		{"read with readable data", [][]byte{h(TypeIn, 0), b(512)}, [][]byte{b(1)}, false, ErrDirection, 0, 0, 0},
		{"write with writable data", [][]byte{h(TypeOut, 0)}, [][]byte{b(512), b(1)}, false, ErrDirection, 0, 0, 0},
		{"flush with data", [][]byte{h(TypeFlush, 0)}, [][]byte{b(512), b(1)}, false, ErrDirection, 0, 0, 0},
		{"get id too short", [][]byte{h(TypeGetID, 0)}, [][]byte{b(19), b(1)}, false, ErrIDLength, 0, 0, 0},
		{"write to ro", [][]byte{h(TypeOut, 0), b(512)}, [][]byte{b(1)}, true, ErrReadOnly, 0, 0, 0},
		{"unsupported", [][]byte{h(13, 0)}, [][]byte{b(1)}, false, ErrUnsupported, 0, 0, 0},
	} {
		ch := chain(c.r, c.w)
		r, err := parse(ch, sectors, c.ro, nil)
		if c.want != nil {
			if !errors.Is(err, c.want) {
				t.Errorf("%s: err %v, want %v", c.name, err, c.want)
			}
			if (c.want == ErrNoStatus) != (r.status == nil) || (c.want == ErrNoStatus) != errors.Is(err, queue.ErrMalformed) {
				t.Errorf("%s: status %v, err %v", c.name, r.status, err)
			}
			continue
		}
		if err != nil || r.typ != c.typ || r.len != c.len || len(r.data) != c.segments {
			t.Errorf("%s: %v, type %d, len %d, %d segments", c.name, err, r.typ, r.len, len(r.data))
			continue
		}
		last := ch.Writable[len(ch.Writable)-1]
		if &r.status[0] != &last[len(last)-1] {
			t.Errorf("%s: status is not the last writable byte", c.name)
		}
	}
	if s := statusFor(ErrUnsupported); s != StatusUnsupp {
		t.Errorf("unsupported → %d", s)
	}
	if s := statusFor(ErrRange); s != StatusIOErr {
		t.Errorf("range → %d", s)
	}
}

func TestSpan(t *testing.T) {
	segs := [][]byte{make([]byte, 10), make([]byte, 5), make([]byte, 20)}
	got := span(nil, segs, 12, 15)
	if len(got) != 2 || len(got[0]) != 3 || len(got[1]) != 12 || &got[0][0] != &segs[1][2] {
		t.Fatalf("span = %d segments %v", len(got), got)
	}
	if got := span(nil, segs, 35, 0); len(got) != 0 {
		t.Fatalf("empty span = %v", got)
	}
}
