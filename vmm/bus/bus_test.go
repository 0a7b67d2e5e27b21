package bus

import "testing"

type recorder struct {
	reads, writes []uint64
}

func (r *recorder) Read(off uint64, data []byte) {
	r.reads = append(r.reads, off)
	for i := range data {
		data[i] = 0xAB
	}
}
func (r *recorder) Write(off uint64, data []byte) { r.writes = append(r.writes, off) }

func TestDispatch(t *testing.T) {
	var b Bus
	a, c := &recorder{}, &recorder{}
	if err := b.Register(0x3f8, 8, a); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(0xcf8, 8, c); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][2]uint64{{0x3f0, 9}, {0x3ff, 1}, {0xcf0, 0x20}, {0x10, 0}, {^uint64(0), 2}} {
		if err := b.Register(bad[0], bad[1], a); err == nil {
			t.Errorf("Register(%#x, %#x) accepted", bad[0], bad[1])
		}
	}
	data := make([]byte, 1)
	if !b.Read(0x3fd, data) || data[0] != 0xAB || a.reads[0] != 5 {
		t.Fatalf("read at 0x3fd: reads %v data %x", a.reads, data)
	}
	if !b.Write(0xcfc, make([]byte, 4)) || c.writes[0] != 4 {
		t.Fatalf("write at 0xcfc: writes %v", c.writes)
	}
	if b.Read(0x3f7, data) || b.Read(0x400, data) || b.Write(0xcfe, make([]byte, 4)) {
		t.Fatal("access outside or straddling a range was claimed")
	}
	if !b.Unregister(0x3f8) || b.Unregister(0x3f8) || b.Read(0x3f8, data) {
		t.Fatal("Unregister did not remove exactly once")
	}
}
