package pcibus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
)

type msixRecorder struct {
	mu     sync.Mutex // the owner's lock
	events []string
	sent   []MSIMessage
	fail   error
}

func (r *msixRecorder) SignalMSI(addr uint64, data uint32) error {
	if r.fail != nil {
		return r.fail
	}
	r.sent = append(r.sent, MSIMessage{addr, data})
	return nil
}
func (r *msixRecorder) MSIXEnabled(on bool) {
	r.events = append(r.events, fmt.Sprintf("enabled=%v", on))
}
func (r *msixRecorder) MSIXMasked(v int, masked bool) {
	r.events = append(r.events, fmt.Sprintf("masked(%d)=%v", v, masked))
}
func (r *msixRecorder) MSIXUpdated(v int) { r.events = append(r.events, fmt.Sprintf("updated(%d)", v)) }

func (r *msixRecorder) take() string {
	s := fmt.Sprint(r.events)
	r.events = nil
	return s
}

func newMSIX(t *testing.T, vectors int) (*MSIX, *ConfigSpace, *msixRecorder) {
	t.Helper()
	cs := NewConfigSpace(Header{VendorID: 1})
	r := &msixRecorder{}
	m, err := AddMSIX(cs, MSIXConfig{Vectors: vectors, TableBAR: 0, TableOffset: 0x2000, PBABAR: 0, PBAOffset: 0x3000,
		Lock: &r.mu, Sender: r, Listener: r})
	if err != nil {
		t.Fatal(err)
	}
	return m, cs, r
}

func writeEntry(m *MSIX, v int, addr uint64, data uint32) {
	var b [4]byte
	for i, w := range []uint32{uint32(addr), uint32(addr >> 32), data} {
		binary.LittleEndian.PutUint32(b[:], w)
		m.WriteTable(uint64(v*16+4*i), b[:])
	}
}

func setCtrl(m *MSIX, v int, masked bool) {
	var b [4]byte
	if masked {
		b[0] = 1
	}
	m.WriteTable(uint64(v*16+12), b[:])
}

func TestMSIXCapability(t *testing.T) {
	_, cs, _ := newMSIX(t, 5)
	off := int(cs.data[RegCapPointer])
	if cs.data[off] != CapMSIX {
		t.Fatalf("capability id %#x", cs.data[off])
	}
	if n := cs.Uint16(off+2)&0x7FF + 1; n != 5 {
		t.Errorf("table size field says %d vectors", n)
	}
	if v := cs.Uint32(off + 4); v != 0x2000 {
		t.Errorf("table offset/BIR %#x", v)
	}
	if v := cs.Uint32(off + 8); v != 0x3000 {
		t.Errorf("PBA offset/BIR %#x", v)
	}
	cs.Write(off+2, []byte{0xFF, 0xFF})
	if c := cs.Uint16(off + 2); c != 0xC004 {
		t.Errorf("message control %#x after writing all ones: only enable and function mask are writable", c)
	}
	cs.Write(off+4, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	if v := cs.Uint32(off + 4); v != 0x2000 {
		t.Errorf("table offset writable: %#x", v)
	}
}

// TestMSIXLinuxSequence follows msix_capability_init: enable with the
// function masked, program entries, unmask the function, then request_irq
// unmasks each entry; __pci_write_msi_msg masks around message rewrites.
func TestMSIXLinuxSequence(t *testing.T) {
	m, cs, r := newMSIX(t, 3)
	ctrl := int(cs.data[RegCapPointer]) + 2
	r.mu.Lock()
	if !m.Masked(0) || m.Enabled() {
		t.Fatal("vectors deliverable before MSI-X is enabled")
	}
	if err := m.Notify(0); err != nil || len(r.sent) != 0 || m.Pending(0) {
		t.Fatalf("notify with MSI-X off: err %v sent %v pending %v", err, r.sent, m.Pending(0))
	}
	r.mu.Unlock()

	cs.Write(ctrl, []byte{0x02, 0xC0}) // enable + function mask
	r.mu.Lock()
	if got := r.take(); got != "[enabled=true]" {
		t.Errorf("events %s", got)
	}
	writeEntry(m, 0, 0xFEE0_1000, 0x4021)
	writeEntry(m, 1, 0xFEE0_2000, 0x4022)
	if got := r.take(); got != "[]" {
		t.Errorf("writes to masked entries reported %s", got)
	}
	if msg := m.Message(1); msg != (MSIMessage{0xFEE0_2000, 0x4022}) {
		t.Errorf("message %+v", msg)
	}
	r.mu.Unlock()

	cs.Write(ctrl, []byte{0x02, 0x80}) // clear function mask: entries still masked
	r.mu.Lock()
	if got := r.take(); got != "[]" {
		t.Errorf("function unmask with all entries masked reported %s", got)
	}
	setCtrl(m, 0, false)
	setCtrl(m, 1, false)
	if got := r.take(); got != "[masked(0)=false masked(1)=false]" {
		t.Errorf("events %s", got)
	}
	if err := m.Notify(1); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.sent) != "[{4276101120 16418}]" {
		t.Errorf("sent %v", r.sent)
	}
	r.sent = nil

	// Rewrite vector 0 the way Linux does (mask, write, unmask).
	setCtrl(m, 0, true)
	writeEntry(m, 0, 0xFEE0_3000, 0x4031)
	setCtrl(m, 0, false)
	if got := r.take(); got != "[masked(0)=true masked(0)=false]" {
		t.Errorf("events %s", got)
	}
	// A rewrite while unmasked is undefined by the spec; it is reported.
	writeEntry(m, 1, 0xFEE0_4000, 0x4041)
	if got := r.take(); got != "[updated(1) updated(1)]" {
		t.Errorf("events %s", got)
	}

	// Masked vectors collect pending bits; unmask delivers them.
	setCtrl(m, 1, true)
	r.take()
	if err := m.Notify(1); err != nil {
		t.Fatal(err)
	}
	pba := make([]byte, 8)
	m.ReadPBA(0, pba)
	if len(r.sent) != 0 || pba[0] != 0b10 {
		t.Fatalf("masked notify: sent %v PBA %x", r.sent, pba)
	}
	setCtrl(m, 1, false)
	if fmt.Sprint(r.sent) != "[{4276109312 16449}]" || m.Pending(1) {
		t.Fatalf("unmask: sent %v pending %v", r.sent, m.Pending(1))
	}
	r.sent = nil
	r.take()
	r.mu.Unlock()

	// Function mask masks every unmasked vector, and a pending one fires on unmask.
	cs.Write(ctrl, []byte{0x02, 0xC0})
	r.mu.Lock()
	if got := r.take(); got != "[masked(0)=true masked(1)=true]" {
		t.Errorf("function mask events %s", got)
	}
	_ = m.Notify(0)
	r.mu.Unlock()
	cs.Write(ctrl, []byte{0x02, 0x80})
	r.mu.Lock()
	if got := r.take(); got != "[masked(0)=false masked(1)=false]" {
		t.Errorf("function unmask events %s", got)
	}
	if len(r.sent) != 1 || r.sent[0].Data != 0x4031 {
		t.Errorf("pending vector 0 not delivered on function unmask: %v", r.sent)
	}
	r.mu.Unlock()

	cs.Write(ctrl, []byte{0x02, 0x00})
	r.mu.Lock()
	if got := r.take(); got != "[enabled=false masked(0)=true masked(1)=true]" {
		t.Errorf("disable events %s", got)
	}
	r.mu.Unlock()
}

func TestMSIXUntrustedAccesses(t *testing.T) {
	m, _, r := newMSIX(t, 2)
	r.mu.Lock()
	defer r.mu.Unlock()
	// Reserved bits of vector control and the address's low bits stay zero.
	m.WriteTable(12, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	m.WriteTable(0, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	got := make([]byte, 16)
	m.ReadTable(0, got)
	if fmt.Sprintf("%x", got) != "fcffffff000000000000000001000000" {
		t.Errorf("entry 0 %x", got)
	}
	// Past the end, straddling the end, 8-byte accesses, odd offsets.
	for _, off := range []uint64{31, 32, 1 << 40, ^uint64(0), 3, 20} {
		for _, n := range []int{1, 2, 4, 8} {
			buf := make([]byte, n)
			m.WriteTable(off, buf)
			m.ReadTable(off, buf)
			m.ReadPBA(off, buf)
		}
	}
	if m.Pending(-1) || m.Pending(2) || !m.Masked(7) || m.Message(9) != (MSIMessage{}) {
		t.Error("out-of-range vectors not handled")
	}
	if err := m.Notify(2); err == nil {
		t.Error("notify of vector 2 in a 2-vector table accepted")
	}
}

func TestMSIXDeliveryFailureOnUnmask(t *testing.T) {
	m, cs, r := newMSIX(t, 1)
	ctrl := int(cs.data[RegCapPointer]) + 2
	cs.Write(ctrl, []byte{0, 0x80})
	r.mu.Lock()
	defer r.mu.Unlock()
	m.SetPending(0)
	r.fail = errors.New("boom")
	setCtrl(m, 0, false) // must not panic; failure is logged
	if m.Pending(0) {
		t.Error("pending bit kept after a failed delivery")
	}
}

func TestAddMSIXValidation(t *testing.T) {
	r := &msixRecorder{}
	good := MSIXConfig{Vectors: 1, Lock: &r.mu, Sender: r, Listener: r}
	bad := []func(*MSIXConfig){
		func(c *MSIXConfig) { c.Vectors = 0 },
		func(c *MSIXConfig) { c.Vectors = 2049 },
		func(c *MSIXConfig) { c.TableBAR = 6 },
		func(c *MSIXConfig) { c.PBAOffset = 4 },
		func(c *MSIXConfig) { c.Listener = nil },
	}
	for i, f := range bad {
		c := good
		f(&c)
		if _, err := AddMSIX(NewConfigSpace(Header{}), c); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
	if _, err := AddMSIX(NewConfigSpace(Header{}), good); err != nil {
		t.Fatal(err)
	}
}
