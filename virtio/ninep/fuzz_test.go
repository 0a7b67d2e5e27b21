package ninep

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

// FuzzRequests feeds arbitrary T-messages through the request queue after
// a Tversion and a Tattach of fid 1 to the share's root. The input is a
// sequence of [len u16][writable u16][message]. Every chain must come back
// with a well-framed reply carrying the guest's tag, or the device must be
// marked broken — no panic, no hang, and no byte from outside the share.
func FuzzRequests(f *testing.F) {
	share, _ := tree(f)
	seed := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(m)))
			b = binary.LittleEndian.AppendUint16(b, 8192)
			b = append(b, m...)
		}
		return b
	}
	walk := func(tag uint16, fid, newfid uint32, names ...string) []byte {
		body := [][]byte{u32(fid), u32(newfid), u16(uint16(len(names)))}
		for _, n := range names {
			body = append(body, str(n))
		}
		return tmsg(110, tag, body...)
	}
	lopen := func(tag uint16, fid uint32) []byte { return tmsg(12, tag, u32(fid), u32(0)) }
	read := func(tag uint16, fid uint32, n uint32) []byte { return tmsg(116, tag, u32(fid), u64(0), u32(n)) }
	f.Add(seed(walk(1, 1, 2, "a", "b", "hello.txt"), lopen(2, 2), read(3, 2, 4096)))
	f.Add(seed(walk(1, 1, 2, ".."), walk(2, 1, 3, "up", "secret"), walk(3, 1, 4, "etc"), tmsg(22, 4, u32(4))))
	f.Add(seed(walk(1, 1, 2), lopen(2, 2), tmsg(40, 3, u32(2), u64(0), u32(4096))))
	f.Add(seed(tmsg(14, 1, u32(1), str("new"), u32(2), u32(0o644), u32(0)), tmsg(72, 2, u32(1), str("d"), u32(0o755), u32(0))))
	f.Add(seed(tmsg(108, 1, u16(1)), tmsg(108, 1, u16(1)), tmsg(120, 2, u32(1)), tmsg(120, 3, u32(1))))
	f.Add(seed(tmsg(30, 1, u32(1), u32(2), str("security.capability")), tmsg(8, 2, u32(1))))
	f.Add(seed([]byte{0xff, 0xff, 0xff, 0xff, 110, 1, 0}, walk(2, 1, 2, "a")))
	f.Add(seed(walk(1, 1, 2, "big.bin"), lopen(2, 2), read(3, 2, 1<<20)))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newHarness(t, share, 32, 1<<20)
		h.roundTrip(tmsg(msgTversion, noTag, u32(8192), str("9P2000.L")), 8192)
		h.roundTrip(tmsg(104, 0, u32(1), u32(^uint32(0)), str(""), str(""), u32(0)), 8192)
		type posted struct {
			tag  uint16
			addr uint64
		}
		chains := map[uint32]posted{}
		for len(data) >= 4 && len(chains) < 16 {
			n, w := int(binary.LittleEndian.Uint16(data)), int(binary.LittleEndian.Uint16(data[2:])%16384)
			data = data[4:]
			msg := data[:min(n, len(data))]
			data = data[len(msg):]
			bufs := []virtiotest.Buf{}
			if len(msg) > 0 {
				bufs = append(bufs, virtiotest.Buf{Data: msg})
			}
			if w > 0 {
				bufs = append(bufs, virtiotest.Buf{Len: w, Write: true})
			}
			if len(bufs) == 0 {
				continue
			}
			var tag uint16
			if len(msg) >= hdrSize {
				tag = binary.LittleEndian.Uint16(msg[5:])
			}
			p := h.q.AddChain(bufs...)
			chains[uint32(p.Head)] = posted{tag: tag, addr: p.Addr[len(p.Addr)-1]}
		}
		h.q.KickDevice()
		deadline := time.Now().Add(10 * time.Second)
		for done := 0; done < len(chains); {
			if len(h.broken) > 0 {
				return
			}
			e, ok := h.q.NextUsed()
			if !ok {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d chains answered, device not broken", done, len(chains))
				}
				time.Sleep(100 * time.Microsecond)
				continue
			}
			done++
			c, ok := chains[e.ID]
			if !ok {
				t.Fatalf("used element for head %d that was not posted", e.ID)
			}
			r := h.g.Bytes(c.addr, uint64(e.Len))
			if len(r) < hdrSize || binary.LittleEndian.Uint32(r) != e.Len || binary.LittleEndian.Uint16(r[5:]) != c.tag {
				t.Fatalf("reply % x for a chain with tag %d, used length %d", r[:min(len(r), 16)], c.tag, e.Len)
			}
			if bytes.Contains(r, []byte("SECRET")) {
				t.Fatalf("reply carries data from outside the share")
			}
		}
	})
}
