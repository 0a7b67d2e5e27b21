package blk

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
	"golang.org/x/sys/unix"
)

const wait = 5 * time.Second

const (
	v1       = uint64(1) << virtio.FeatureVersion1
	eventIdx = uint64(1) << virtio.FeatureEventIdx
	indirect = uint64(1) << virtio.FeatureIndirectDesc
)

// image writes a disk image of n sectors with a position-dependent pattern
// and returns its path.
func image(t testing.TB, name string, sectors int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, pattern(sectors*SectorSize, 7), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*13) + byte(i>>9)
	}
	return b
}

func fileSum(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

type rig struct {
	t      *testing.T
	path   string
	g      *virtiotest.Guest
	q      *virtiotest.Queue
	dev    *Device
	m      *Metrics
	a      virtio.Activation
	broken chan error
}

type rigOpts struct {
	ro       bool
	serial   string
	features uint64
	sectors  int
	qsize    uint16
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	if o.sectors == 0 {
		o.sectors = 64
	}
	if o.features == 0 {
		o.features = v1
	}
	if o.qsize == 0 {
		o.qsize = 16
	}
	path := image(t, "disk.img", o.sectors)
	disk, err := Open(Spec{Path: path, ReadOnly: o.ro, Serial: o.serial})
	if err != nil {
		t.Fatal(err)
	}
	m := new(Metrics)
	dev, err := New(disk, &Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Error(err)
		}
	})
	r := &rig{t: t, path: path, dev: dev, m: m, broken: make(chan error, 4)}
	r.g = virtiotest.NewGuest(t, 16<<20)
	r.activate(o.features, o.qsize)
	return r
}

func (r *rig) activate(features uint64, size uint16) {
	r.t.Helper()
	r.q = r.g.NewQueue(0, size)
	r.a = virtio.Activation{
		Features: features,
		Memory:   r.g.Mem,
		Queues:   []virtio.QueueConfig{r.q.Config()},
		Broken:   func(err error) { r.broken <- err },
	}
	if err := r.dev.Activate(r.a); err != nil {
		r.t.Fatal(err)
	}
}

func header(typ uint32, sector uint64) []byte {
	h := make([]byte, HeaderSize)
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint32(h[4:], 0xdeadbeef) // reserved: ignored
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

// do posts a chain, kicks, waits for completion and returns the used
// element and the status byte (the last byte of the last buffer).
func (r *rig) do(bufs ...virtiotest.Buf) (virtiotest.UsedElem, byte, virtiotest.Posted) {
	r.t.Helper()
	p := r.q.AddChain(bufs...)
	r.q.KickDevice()
	e := r.q.WaitUsed(wait)
	if e.ID != uint32(p.Head) {
		r.t.Fatalf("used id %d, posted head %d", e.ID, p.Head)
	}
	last := bufs[len(bufs)-1]
	n := uint64(len(last.Data))
	if last.Write {
		n = uint64(last.Len)
	}
	st := r.g.Bytes(p.Addr[len(p.Addr)-1]+n-1, 1)[0]
	return e, st, p
}

func in(n int) virtiotest.Buf     { return virtiotest.Buf{Len: n, Write: true} }
func out(b []byte) virtiotest.Buf { return virtiotest.Buf{Data: b} }
func status() virtiotest.Buf      { return in(1) }

func (r *rig) expectBroken(want ...error) {
	r.t.Helper()
	select {
	case err := <-r.broken:
		for _, w := range want {
			if !errors.Is(err, w) {
				r.t.Fatalf("Broken(%v), want it to wrap %v", err, w)
			}
		}
	case <-time.After(wait):
		r.t.Fatal("device did not call Broken")
	}
}

func (r *rig) notBroken() {
	r.t.Helper()
	select {
	case err := <-r.broken:
		r.t.Fatalf("unexpected Broken: %v", err)
	default:
	}
}

func TestReadSectors(t *testing.T) {
	for _, f := range []uint64{v1, v1 | eventIdx | indirect} {
		r := newRig(t, rigOpts{features: f})
		want := pattern(64*SectorSize, 7)
		// Eight sectors from sector 3 over two uneven buffers, status apart.
		e, st, p := r.do(out(header(TypeIn, 3)), in(1000), in(3096), status())
		if st != StatusOK || e.Len != 4096+1 {
			t.Fatalf("read: status %d, used len %d", st, e.Len)
		}
		got := append(r.g.Bytes(p.Addr[1], 1000), r.g.Bytes(p.Addr[2], 3096)...)
		if !bytes.Equal(got, want[3*SectorSize:11*SectorSize]) {
			t.Fatal("read data differs from the image")
		}
		// Data and status in one buffer; the last sector of the disk.
		e, st, p = r.do(out(header(TypeIn, 63)), in(SectorSize+1))
		if st != StatusOK || e.Len != SectorSize+1 {
			t.Fatalf("read last sector: status %d, used len %d", st, e.Len)
		}
		if !bytes.Equal(r.g.Bytes(p.Addr[1], SectorSize), want[63*SectorSize:]) {
			t.Fatal("last sector differs from the image")
		}
		// Header split over two descriptors.
		h := header(TypeIn, 10)
		e, st, p = r.do(out(h[:5]), out(h[5:]), in(SectorSize), status())
		if st != StatusOK || !bytes.Equal(r.g.Bytes(p.Addr[2], SectorSize), want[10*SectorSize:11*SectorSize]) {
			t.Fatalf("read with split header: status %d", st)
		}
		r.notBroken()
		s := r.m.Snapshot()
		if s.Reads != 3 || s.ReadBytes != 4096+2*SectorSize || s.Errors != 0 || s.Interrupts == 0 {
			t.Fatalf("metrics %+v", s)
		}
	}
}

func TestReadManySegments(t *testing.T) {
	// More segments than one preadv takes (IOV_MAX = 1024), through an
	// indirect table.
	const n = 1100
	r := newRig(t, rigOpts{features: v1 | indirect, sectors: n + 4, qsize: 4})
	table := r.g.Alloc(16*(n+2), 16)
	hdr := r.g.Alloc(HeaderSize, 8)
	r.g.Write(hdr, header(TypeIn, 2))
	virtiotest.WriteDescAt(r.g, table, 0, hdr, HeaderSize, virtiotest.Next, 1)
	bufs := r.g.Alloc(n*SectorSize+1, 8)
	for i := range uint16(n) {
		virtiotest.WriteDescAt(r.g, table, i+1, bufs+uint64(i)*SectorSize, SectorSize, virtiotest.Write|virtiotest.Next, i+2)
	}
	virtiotest.WriteDescAt(r.g, table, n+1, bufs+n*SectorSize, 1, virtiotest.Write, 0)
	r.q.WriteDesc(0, table, 16*(n+2), virtiotest.Indirect, 0)
	r.q.Post(0)
	r.q.KickDevice()
	e := r.q.WaitUsed(wait)
	if st := r.g.Bytes(bufs+n*SectorSize, 1)[0]; st != StatusOK || e.Len != n*SectorSize+1 {
		t.Fatalf("status %d, used len %d", st, e.Len)
	}
	if !bytes.Equal(r.g.Bytes(bufs, n*SectorSize), pattern((n+4)*SectorSize, 7)[2*SectorSize:(n+2)*SectorSize]) {
		t.Fatal("data differs from the image")
	}
}

func TestWriteReadWrite(t *testing.T) {
	r := newRig(t, rigOpts{})
	data := pattern(2*SectorSize, 99)
	// Header and data in one readable buffer, then status.
	e, st, _ := r.do(out(append(header(TypeOut, 5), data...)), status())
	if st != StatusOK || e.Len != 1 {
		t.Fatalf("write: status %d, used len %d", st, e.Len)
	}
	img, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	want := pattern(64*SectorSize, 7)
	copy(want[5*SectorSize:], data)
	if !bytes.Equal(img, want) {
		t.Fatal("image after write: not the old image with sectors 5-6 replaced")
	}
	// Read back through the device.
	_, st, p := r.do(out(header(TypeIn, 5)), in(2*SectorSize), status())
	if st != StatusOK || !bytes.Equal(r.g.Bytes(p.Addr[1], 2*SectorSize), data) {
		t.Fatal("read-back differs")
	}
	// FLUSH reaches fdatasync and succeeds.
	if _, st, _ := r.do(out(header(TypeFlush, 0)), status()); st != StatusOK {
		t.Fatalf("flush status %d", st)
	}
	if s := r.m.Snapshot(); s.Writes != 1 || s.WriteBytes != 2*SectorSize || s.Flushes != 1 {
		t.Fatalf("metrics %+v", s)
	}
}

func TestReadOnly(t *testing.T) {
	r := newRig(t, rigOpts{ro: true})
	if !virtio.HasFeature(r.dev.Features(), FeatureRO) {
		t.Fatal("read-only disk does not offer VIRTIO_BLK_F_RO")
	}
	fl, err := unix.FcntlInt(r.dev.Disk().f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_ACCMODE != unix.O_RDONLY {
		t.Fatalf("read-only disk opened with flags %#x", fl)
	}
	before := fileSum(t, r.path)
	for _, sector := range []uint64{0, 5, 63} {
		e, st, _ := r.do(out(header(TypeOut, sector)), out(pattern(SectorSize, 1)), status())
		if st != StatusIOErr || e.Len != 1 {
			t.Fatalf("write to ro disk at sector %d: status %d, used len %d", sector, st, e.Len)
		}
	}
	if _, st, _ := r.do(out(header(TypeFlush, 0)), status()); st != StatusOK {
		t.Fatalf("flush on ro disk: status %d", st)
	}
	if _, st, _ := r.do(out(header(TypeIn, 0)), in(SectorSize), status()); st != StatusOK {
		t.Fatalf("read on ro disk: status %d", st)
	}
	if fileSum(t, r.path) != before {
		t.Fatal("read-only image changed")
	}
	if s := r.m.Snapshot(); s.Writes != 0 || s.Errors != 3 || s.Reads != 1 {
		t.Fatalf("metrics %+v", s)
	}
	r.notBroken()
}

func TestGetID(t *testing.T) {
	r := newRig(t, rigOpts{serial: "store-disk-1"})
	e, st, p := r.do(out(header(TypeGetID, 0)), in(SerialLen), status())
	if st != StatusOK || e.Len != SerialLen+1 {
		t.Fatalf("GET_ID: status %d, used len %d", st, e.Len)
	}
	if got := r.g.Bytes(p.Addr[1], SerialLen); !bytes.Equal(got, append([]byte("store-disk-1"), make([]byte, 8)...)) {
		t.Fatalf("serial %q", got)
	}
	// Too short a buffer.
	if _, st, _ := r.do(out(header(TypeGetID, 0)), in(10), status()); st != StatusIOErr {
		t.Fatalf("GET_ID into 10 bytes: status %d", st)
	}

	// Default: the file name, cut to 20 bytes.
	path := image(t, "a-very-long-disk-image-name.erofs", 8)
	disk, err := Open(Spec{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	if s := disk.Serial(); string(s[:]) != "a-very-long-disk-ima" {
		t.Fatalf("default serial %q", s)
	}
}

func TestBadRequests(t *testing.T) {
	r := newRig(t, rigOpts{})
	before := fileSum(t, r.path)
	for _, c := range []struct {
		name string
		bufs []virtiotest.Buf
		want byte
	}{
		{"sector at capacity", []virtiotest.Buf{out(header(TypeIn, 64)), in(SectorSize), status()}, StatusIOErr},
		{"range past the end", []virtiotest.Buf{out(header(TypeIn, 63)), in(2 * SectorSize), status()}, StatusIOErr},
		{"sector overflow", []virtiotest.Buf{out(header(TypeIn, 1<<64-1)), in(SectorSize), status()}, StatusIOErr},
		{"sector*512 overflow", []virtiotest.Buf{out(header(TypeOut, 1<<55)), out(pattern(SectorSize, 1)), status()}, StatusIOErr},
		{"unaligned read", []virtiotest.Buf{out(header(TypeIn, 0)), in(100), status()}, StatusIOErr},
		{"unaligned write", []virtiotest.Buf{out(header(TypeOut, 0)), out(pattern(700, 1)), status()}, StatusIOErr},
		{"short header", []virtiotest.Buf{out(header(TypeIn, 0)[:8]), in(SectorSize), status()}, StatusIOErr},
		{"read with readable data", []virtiotest.Buf{out(header(TypeIn, 0)), out(pattern(SectorSize, 1)), status()}, StatusIOErr},
		{"write with writable data", []virtiotest.Buf{out(header(TypeOut, 0)), in(SectorSize), status()}, StatusIOErr},
		{"flush with data", []virtiotest.Buf{out(header(TypeFlush, 0)), out(pattern(SectorSize, 1)), status()}, StatusIOErr},
		{"get id with readable data", []virtiotest.Buf{out(header(TypeGetID, 0)), out(make([]byte, 20)), in(20), status()}, StatusIOErr},
		{"discard", []virtiotest.Buf{out(header(11, 0)), out(make([]byte, 16)), status()}, StatusUnsupp},
		{"unknown type", []virtiotest.Buf{out(header(0xffffffff, 0)), status()}, StatusUnsupp},
	} {
		e, st, _ := r.do(c.bufs...)
		if st != c.want || e.Len != 1 {
			t.Errorf("%s: status %d, used len %d; want status %d, len 1", c.name, st, e.Len, c.want)
		}
	}
	r.notBroken()
	if fileSum(t, r.path) != before {
		t.Fatal("a rejected request changed the image")
	}
	// The queue still works.
	if _, st, _ := r.do(out(header(TypeIn, 0)), in(SectorSize), status()); st != StatusOK {
		t.Fatalf("read after bad requests: status %d", st)
	}
	if s := r.m.Snapshot(); s.Errors != 11 || s.Unsupported != 2 {
		t.Fatalf("metrics %+v", s)
	}
}

func TestMalformedChains(t *testing.T) {
	for _, c := range []struct {
		name string
		post func(r *rig)
		want []error
	}{
		{"no status byte", func(r *rig) { r.q.AddChain(out(header(TypeIn, 0))) }, []error{queue.ErrMalformed, ErrNoStatus}},
		{"status not writable", func(r *rig) { r.q.AddChain(out(header(TypeOut, 0)), out(pattern(SectorSize, 1)), out([]byte{0})) }, []error{queue.ErrMalformed, ErrNoStatus}},
		{"empty chain", func(r *rig) { r.q.WriteDesc(0, virtiotest.Base, 0, 0, 0); r.q.Post(0) }, []error{queue.ErrMalformed, ErrNoStatus}},
		{"buffer outside RAM", func(r *rig) { r.q.WriteDesc(0, 1<<40, 16, 0, 0); r.q.Post(0) }, []error{queue.ErrMalformed, queue.ErrDescBuffer}},
		{"head out of range", func(r *rig) { r.q.Post(200) }, []error{queue.ErrMalformed, queue.ErrDescIndex}},
		{"indirect not negotiated", func(r *rig) { r.q.WriteDesc(0, virtiotest.Base, 32, virtiotest.Indirect, 0); r.q.Post(0) }, []error{queue.ErrMalformed, queue.ErrIndirect}},
		{"avail index runs ahead", func(r *rig) { r.q.SetAvailIdx(1000) }, []error{queue.ErrMalformed, queue.ErrAvailIndex}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, rigOpts{})
			before := fileSum(t, r.path)
			c.post(r)
			r.q.KickDevice()
			r.expectBroken(c.want...)
			if r.m.MalformedChains.Load() != 1 {
				t.Fatalf("MalformedChains = %d", r.m.MalformedChains.Load())
			}
			if fileSum(t, r.path) != before {
				t.Fatal("image changed")
			}
			// The driver resets the device; it comes back.
			r.dev.Reset()
			r.activate(v1, 16)
			if _, st, _ := r.do(out(header(TypeIn, 1)), in(SectorSize), status()); st != StatusOK {
				t.Fatalf("read after reset: status %d", st)
			}
		})
	}
}

func TestConfigSpace(t *testing.T) {
	path := image(t, "disk.img", 2048)
	disk, err := Open(Spec{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(disk, &Options{QueueSize: 128, Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	read := func(off uint64, n int) []byte {
		b := bytes.Repeat([]byte{0xaa}, n)
		d.ReadConfig(off, b)
		return b
	}
	if v := binary.LittleEndian.Uint64(read(0, 8)); v != 2048 {
		t.Errorf("capacity %d", v)
	}
	if v := binary.LittleEndian.Uint32(read(12, 4)); v != 126 {
		t.Errorf("seg_max %d", v)
	}
	if v := binary.LittleEndian.Uint32(read(20, 4)); v != 512 {
		t.Errorf("blk_size %d", v)
	}
	if v := binary.LittleEndian.Uint16(read(34, 2)); v != 2 {
		t.Errorf("num_queues %d", v)
	}
	// Byte-wise reads agree with wide ones; odd offsets and widths work.
	if b := read(1, 3); !bytes.Equal(b, []byte{8, 0, 0}) {
		t.Errorf("capacity bytes 1-3: %x", b)
	}
	if b := read(32, 2); !bytes.Equal(b, []byte{0, 0}) {
		t.Errorf("writeback (not offered) reads %x", b)
	}
	for _, off := range []uint64{8, 16, 24, 28, 36, 40, 44, 48, 52, 56} {
		if b := read(off, 4); !bytes.Equal(b, make([]byte, 4)) {
			t.Errorf("field at %d (feature not offered) reads %x", off, b)
		}
	}
	if b := read(58, 8); !bytes.Equal(b, make([]byte, 8)) {
		t.Errorf("read across the end: %x", b)
	}
	if b := read(1<<64-2, 4); !bytes.Equal(b, make([]byte, 4)) {
		t.Errorf("read at wrapping offset: %x", b)
	}
	d.WriteConfig(0, []byte{1, 2, 3, 4})
	if v := binary.LittleEndian.Uint64(read(0, 8)); v != 2048 {
		t.Errorf("capacity writable: %d", v)
	}
	f := d.Features()
	for _, bit := range []uint{virtio.FeatureVersion1, virtio.FeatureEventIdx, virtio.FeatureIndirectDesc, FeatureSegMax, FeatureBlkSize, FeatureFlush, FeatureMQ} {
		if !virtio.HasFeature(f, bit) {
			t.Errorf("feature %d not offered", bit)
		}
	}
	if virtio.HasFeature(f, FeatureRO) {
		t.Error("read-write disk offers RO")
	}
	if d.ID() != virtio.DeviceBlock || len(d.QueueMaxSizes()) != 2 || d.QueueMaxSizes()[1] != 128 {
		t.Errorf("id %d, queues %v", d.ID(), d.QueueMaxSizes())
	}
}

func TestInterruptSuppression(t *testing.T) {
	r := newRig(t, rigOpts{})
	r.q.SetAvailFlags(queue.AvailFNoInterrupt)
	r.do(out(header(TypeIn, 0)), in(SectorSize), status())
	if r.q.Interrupted() {
		t.Fatal("interrupt despite VIRTQ_AVAIL_F_NO_INTERRUPT")
	}
	r.q.SetAvailFlags(0)
	r.do(out(header(TypeIn, 0)), in(SectorSize), status())
	if !r.q.Interrupted() {
		t.Fatal("no interrupt")
	}

	r = newRig(t, rigOpts{features: v1 | eventIdx})
	r.q.SetUsedEvent(0)
	r.do(out(header(TypeIn, 0)), in(SectorSize), status()) // used idx 0 → 1: crosses 0
	if !r.q.Interrupted() {
		t.Fatal("EVENT_IDX: no interrupt when used_event was crossed")
	}
	r.q.SetUsedEvent(100)
	r.do(out(header(TypeIn, 0)), in(SectorSize), status())
	if r.q.Interrupted() {
		t.Fatal("EVENT_IDX: interrupt although used_event is far ahead")
	}
	// The device asks to be kicked for the next buffer (avail_event).
	if got := r.q.AvailEvent(); got != 2 {
		t.Fatalf("avail_event %d, want 2", got)
	}
}

func TestResetReactivate(t *testing.T) {
	r := newRig(t, rigOpts{features: v1 | eventIdx})
	if _, st, _ := r.do(out(header(TypeIn, 0)), in(SectorSize), status()); st != StatusOK {
		t.Fatal(st)
	}
	if err := r.dev.Activate(r.a); !errors.Is(err, ErrActive) {
		t.Fatalf("second Activate: %v", err)
	}
	done := make(chan struct{})
	go func() { r.dev.Reset(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Reset did not return")
	}
	r.dev.Reset() // twice is fine
	// Stopped: a posted request is not served.
	r.q.AddChain(out(header(TypeIn, 0)), in(SectorSize), status())
	r.q.KickDevice()
	time.Sleep(50 * time.Millisecond)
	if _, ok := r.q.NextUsed(); ok {
		t.Fatal("request served after Reset")
	}
	// Fresh rings, as a driver reloading would set up.
	r.activate(v1|indirect, 32)
	e, st, p := r.do(out(header(TypeIn, 7)), in(SectorSize), status())
	if st != StatusOK || e.Len != SectorSize+1 || !bytes.Equal(r.g.Bytes(p.Addr[1], SectorSize), pattern(64*SectorSize, 7)[7*SectorSize:8*SectorSize]) {
		t.Fatalf("read after reactivation: status %d, len %d", st, e.Len)
	}
}

func TestActivateErrors(t *testing.T) {
	disk, err := Open(Spec{Path: image(t, "d.img", 8)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(disk, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	g := virtiotest.NewGuest(t, 1<<20)
	q := g.NewQueue(0, 16)
	bad := q.Config()
	bad.Desc = 1 << 40
	for name, a := range map[string]virtio.Activation{
		"no VERSION_1":     {Features: 0, Memory: g.Mem, Queues: []virtio.QueueConfig{q.Config()}},
		"unoffered MQ":     {Features: v1 | 1<<FeatureMQ, Memory: g.Mem, Queues: []virtio.QueueConfig{q.Config()}},
		"no queues":        {Features: v1, Memory: g.Mem},
		"ring outside RAM": {Features: v1, Memory: g.Mem, Queues: []virtio.QueueConfig{bad}},
	} {
		if err := d.Activate(a); err == nil {
			t.Errorf("%s: Activate succeeded", name)
		}
	}
	// Nothing was left running: a good activation works.
	if err := d.Activate(virtio.Activation{Features: v1, Memory: g.Mem, Queues: []virtio.QueueConfig{q.Config()}}); err != nil {
		t.Fatal(err)
	}
}

func TestMultiQueue(t *testing.T) {
	disk, err := Open(Spec{Path: image(t, "d.img", 64)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(disk, &Options{Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	g := virtiotest.NewGuest(t, 4<<20)
	q0, q1 := g.NewQueue(0, 16), g.NewQueue(1, 16)
	if err := d.Activate(virtio.Activation{Features: v1 | 1<<FeatureMQ, Memory: g.Mem, Queues: []virtio.QueueConfig{q0.Config(), q1.Config()}}); err != nil {
		t.Fatal(err)
	}
	want := pattern(64*SectorSize, 7)
	var ps [2]virtiotest.Posted
	for i, q := range []*virtiotest.Queue{q0, q1} {
		ps[i] = q.AddChain(out(header(TypeIn, uint64(10*i))), in(SectorSize), status())
		q.KickDevice()
	}
	for i, q := range []*virtiotest.Queue{q0, q1} {
		q.WaitUsed(wait)
		if !bytes.Equal(g.Bytes(ps[i].Addr[1], SectorSize), want[10*i*SectorSize:][:SectorSize]) {
			t.Fatalf("queue %d read wrong data", i)
		}
	}
}
