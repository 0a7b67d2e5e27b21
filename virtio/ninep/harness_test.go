package ninep

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hugelgupf/p9/p9"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
)

// harness is a virtio-9p device activated on a virtiotest queue.
type harness struct {
	t        testing.TB
	g        *virtiotest.Guest
	q        *virtiotest.Queue
	d        *Device
	features uint64 // accepted by the driver
	broken   chan error
}

func newHarness(t testing.TB, dir string, qsize uint16, guestMem int) *harness {
	t.Helper()
	return newHarnessFeatures(t, dir, qsize, guestMem, 0)
}

// newHarnessFeatures is newHarness with the driver accepting features (0:
// everything the device offers).
func newHarnessFeatures(t testing.TB, dir string, qsize uint16, guestMem int, features uint64) *harness {
	t.Helper()
	d, err := New(Config{Share: Share{Path: dir, Tag: "ro-store", ReadOnly: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	g := virtiotest.NewGuest(t, guestMem)
	if features == 0 {
		features = d.Features()
	}
	h := &harness{t: t, g: g, q: g.NewQueue(0, qsize), d: d, features: features, broken: make(chan error, 16)}
	h.activate()
	return h
}

func (h *harness) activate() {
	h.t.Helper()
	err := h.d.Activate(virtio.Activation{
		Features: h.features,
		Memory:   h.g.Mem,
		Queues:   []virtio.QueueConfig{h.q.Config()},
		Broken:   func(err error) { h.broken <- err },
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(h.d.Reset)
}

// expectBroken waits for the device to report a malformed queue.
func (h *harness) expectBroken(want error) error {
	h.t.Helper()
	select {
	case err := <-h.broken:
		if !errors.Is(err, want) {
			h.t.Fatalf("Broken(%v), want an error wrapping %v", err, want)
		}
		return err
	case <-time.After(5 * time.Second):
		h.t.Fatalf("device not marked broken")
		return nil
	}
}

func (h *harness) notBroken() {
	h.t.Helper()
	select {
	case err := <-h.broken:
		h.t.Fatalf("device marked broken: %v", err)
	default:
	}
}

// roundTrip posts one raw T-message with a writable buffer of wlen bytes
// and returns the reply.
func (h *harness) roundTrip(msg []byte, wlen int) []byte {
	h.t.Helper()
	p := h.q.AddChain(virtiotest.Buf{Data: msg}, virtiotest.Buf{Len: wlen, Write: true})
	h.q.KickDevice()
	e := h.q.WaitUsed(5 * time.Second)
	if e.ID != uint32(p.Head) {
		h.t.Fatalf("used element for head %d, posted %d", e.ID, p.Head)
	}
	return append([]byte(nil), h.g.Bytes(p.Addr[1], uint64(e.Len))...)
}

// tmsg frames a 9P message.
func tmsg(typ uint8, tag uint16, body ...[]byte) []byte {
	b := make([]byte, hdrSize)
	b[4] = typ
	binary.LittleEndian.PutUint16(b[5:], tag)
	for _, x := range body {
		b = append(b, x...)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func str(s string) []byte { return append(u16(uint16(len(s))), s...) }

// transport is the driver side for p9.NewClient: each T-message the
// client writes becomes one chain (readable: the message; writable: msize
// bytes) from a fixed pool of slots, and replies are read off the used ring
// into a pipe the client reads.
type transport struct {
	h     *harness
	msize int
	mu    sync.Mutex // guards the virtiotest queue
	buf   []byte     // partial T-message
	slots chan uint16
	tbuf  []uint64 // per slot: readable and writable buffer addresses
	wbuf  []uint64
	pr    *io.PipeReader
	pw    *io.PipeWriter
	done  chan struct{}
	wg    sync.WaitGroup
}

func newTransport(h *harness, msize, slots int) *transport {
	tr := &transport{h: h, msize: msize, slots: make(chan uint16, slots), done: make(chan struct{})}
	for i := range slots {
		tr.tbuf = append(tr.tbuf, h.g.Alloc(uint64(msize), 8))
		tr.wbuf = append(tr.wbuf, h.g.Alloc(uint64(msize), 8))
		tr.slots <- uint16(i)
	}
	tr.pr, tr.pw = io.Pipe()
	tr.wg.Add(1)
	go tr.receive()
	return tr
}

func (tr *transport) Write(p []byte) (int, error) {
	tr.buf = append(tr.buf, p...)
	for len(tr.buf) >= 4 {
		size := int(binary.LittleEndian.Uint32(tr.buf))
		if len(tr.buf) < size {
			break
		}
		if size > tr.msize {
			return 0, errors.New("transport: message larger than msize")
		}
		var slot uint16
		select {
		case slot = <-tr.slots:
		case <-tr.done:
			return 0, io.ErrClosedPipe
		}
		tr.mu.Lock()
		select {
		case <-tr.done: // closed (the client's finalizers write after the test)
			tr.mu.Unlock()
			return 0, io.ErrClosedPipe
		default:
		}
		tr.h.g.Write(tr.tbuf[slot], tr.buf[:size])
		tr.h.q.WriteDesc(2*slot, tr.tbuf[slot], uint32(size), virtiotest.Next, 2*slot+1)
		tr.h.q.WriteDesc(2*slot+1, tr.wbuf[slot], uint32(tr.msize), virtiotest.Write, 0)
		tr.h.q.Post(2 * slot)
		tr.h.q.Kick.Signal() //nolint:errcheck // a lost kick shows as a hang
		tr.mu.Unlock()
		tr.buf = tr.buf[size:]
	}
	return len(p), nil
}

func (tr *transport) receive() {
	defer tr.wg.Done()
	for {
		tr.mu.Lock()
		e, ok := tr.h.q.NextUsed()
		tr.mu.Unlock()
		if !ok {
			select {
			case <-tr.done:
				return
			case <-time.After(50 * time.Microsecond):
			}
			continue
		}
		slot := uint16(e.ID / 2)
		reply := append([]byte(nil), tr.h.g.Bytes(tr.wbuf[slot], uint64(e.Len))...)
		tr.slots <- slot
		if _, err := tr.pw.Write(reply); err != nil {
			return
		}
	}
}

func (tr *transport) Read(p []byte) (int, error) { return tr.pr.Read(p) }

func (tr *transport) Close() error {
	tr.mu.Lock()
	select {
	case <-tr.done:
	default:
		close(tr.done)
		tr.pw.Close()
	}
	tr.mu.Unlock()
	tr.wg.Wait()
	return nil
}

// client attaches a p9 client through the device's queue.
func (h *harness) client(msize int) (*p9.Client, p9.File) {
	h.t.Helper()
	tr := newTransport(h, msize, 16)
	c, err := p9.NewClient(tr, p9.WithMessageSize(uint32(msize)))
	if err != nil {
		h.t.Fatalf("p9 client: %v", err)
	}
	h.t.Cleanup(func() { c.Close(); tr.Close() })
	root, err := c.Attach("")
	if err != nil {
		h.t.Fatalf("attach: %v", err)
	}
	return c, root
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

type virtiotestBuf = virtiotest.Buf

const virtiotestNext = virtiotest.Next
