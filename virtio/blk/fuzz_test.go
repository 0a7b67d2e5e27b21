package blk

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

const (
	fuzzArena   = 64 << 10
	fuzzSectors = 64
	fuzzMaxSegs = 32
)

// fuzzChain carves segments one after another out of arena as layout says
// (3 bytes each: flags, le16 length; flag bit 0 = device-writable) and
// returns them as the chain walker would: readable ones, then writable.
func fuzzChain(arena, layout []byte) *queue.Chain {
	c := &queue.Chain{}
	off := 0
	for i := 0; i+3 <= len(layout) && i/3 < fuzzMaxSegs; i += 3 {
		n := min(int(binary.LittleEndian.Uint16(layout[i+1:])), len(arena)-off)
		seg := arena[off : off+n : off+n]
		off += n
		if layout[i]&1 != 0 {
			c.WriteLen += uint32(n)
			if n > 0 {
				c.Writable = append(c.Writable, seg)
			}
		} else {
			c.ReadLen += uint32(n)
			if n > 0 {
				c.Readable = append(c.Readable, seg)
			}
		}
	}
	return c
}

func concat(segs [][]byte) []byte {
	var b []byte
	for _, s := range segs {
		b = append(b, s...)
	}
	return b
}

// FuzzBlockRequest feeds arbitrary chains (header bytes, segment lengths and
// directions) to the request parser and executor on a read-write and a
// read-only image, and checks what the device did against the files.
func FuzzBlockRequest(f *testing.F) {
	dir := f.TempDir()
	devs := map[bool]*Device{}
	paths := map[bool]string{}
	for _, ro := range []bool{false, true} {
		p := filepath.Join(dir, map[bool]string{false: "rw.img", true: "ro.img"}[ro])
		if err := os.WriteFile(p, pattern(fuzzSectors*SectorSize, 3), 0o644); err != nil {
			f.Fatal(err)
		}
		disk, err := Open(Spec{Path: p, ReadOnly: ro, Serial: "fuzz-serial"})
		if err != nil {
			f.Fatal(err)
		}
		d, err := New(disk, nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { d.Close() })
		devs[ro], paths[ro] = d, p
	}
	roSum := fileSum(f, paths[true])
	rwFile, err := os.Open(paths[false])
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { rwFile.Close() })

	f.Fuzz(func(t *testing.T, arena, layout []byte, ro bool) {
		mem := make([]byte, fuzzArena)
		copy(mem, arena)
		c := fuzzChain(mem, layout)
		readable := concat(c.Readable)
		d := devs[ro]
		parsed, perr := parse(c, fuzzSectors, ro, nil)
		typ, sector, n := parsed.typ, parsed.sector, parsed.len

		used, _, err := d.execute(c, nil)
		if (err != nil) != (c.WriteLen == 0) {
			t.Fatalf("execute error %v with %d writable bytes", err, c.WriteLen)
		}
		if !bytes.Equal(concat(c.Readable), readable) {
			t.Fatal("device wrote into a device-readable buffer")
		}
		if ro && fileSum(t, paths[true]) != roSum {
			t.Fatal("read-only image changed")
		}
		if err != nil {
			return
		}
		if used < 1 || used > c.WriteLen {
			t.Fatalf("used length %d, chain has %d writable bytes", used, c.WriteLen)
		}
		w := concat(c.Writable)
		st := w[len(w)-1]
		if st != statusFor(perr) && !(perr == nil && st == StatusIOErr) {
			t.Fatalf("status %d after parse error %v", st, perr)
		}
		if st != StatusOK {
			if used != 1 {
				t.Fatalf("failed request reported %d bytes", used)
			}
			return
		}
		switch typ {
		case TypeIn:
			want := pattern(fuzzSectors*SectorSize, 3)
			if !ro {
				want = make([]byte, n)
				if _, err := rwFile.ReadAt(want, int64(sector*SectorSize)); err != nil {
					t.Fatal(err)
				}
			} else {
				want = want[sector*SectorSize:][:n]
			}
			if uint64(used) != n+1 || !bytes.Equal(w[:n], want) {
				t.Fatalf("read of %d bytes at sector %d: used %d, data differs", n, sector, used)
			}
		case TypeOut:
			if ro {
				t.Fatal("write to a read-only disk reported OK")
			}
			got := make([]byte, n)
			if _, err := rwFile.ReadAt(got, int64(sector*SectorSize)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, readable[HeaderSize:]) {
				t.Fatalf("write of %d bytes at sector %d did not land", n, sector)
			}
		case TypeGetID:
			if used != SerialLen+1 || !bytes.Equal(w[:SerialLen], append([]byte("fuzz-serial"), make([]byte, 9)...)) {
				t.Fatalf("GET_ID wrote %q", w[:SerialLen])
			}
		}
	})
}

// TestFuzzSeedsExist keeps the checked-in corpus from disappearing.
func TestFuzzSeedsExist(t *testing.T) {
	ents, err := os.ReadDir("testdata/fuzz/FuzzBlockRequest")
	if err != nil || len(ents) < 5 {
		t.Fatalf("seed corpus: %d entries, %v", len(ents), err)
	}
}
