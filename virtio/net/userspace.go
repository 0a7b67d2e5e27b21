package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// HeaderSize is the size of struct virtio_net_hdr_v1 (VERSION_1 always
// has num_buffers), and the TAP's vnet header size.
const HeaderSize = 12

// numBuffersOff is the offset of num_buffers in the header.
const numBuffersOff = 10

// maxFrame bounds one frame with its header: 64 KiB GSO frames plus
// headroom. A TAP read that fills the whole buffer is treated as truncated.
const maxFrame = 128 << 10

// ErrDirection is wrapped (with queue.ErrMalformed) when a chain has
// buffers the device would have to write on the TX queue or read on the RX
// queue.
var ErrDirection = errors.New("descriptor direction wrong for the queue")

var _ Backend = (*Userspace)(nil)

// UserspaceOptions configure a userspace backend; nil means defaults.
type UserspaceOptions struct {
	Metrics *Metrics     // counters to update; nil: private ones
	Logger  *slog.Logger // nil: discard
}

// Userspace is the userspace datapath: a TX goroutine copies frames from the
// guest's TX chains to the TAP and an RX goroutine copies frames from the
// TAP into the guest's RX buffers. It is the fallback when vhost-net is not
// available and the yardstick vhost-net is measured against.
type Userspace struct {
	tap Tap
	m   *Metrics
	log *slog.Logger

	mu  sync.Mutex
	run *session // nil when stopped
}

// session is one Start..Stop period.
type session struct {
	u        *Userspace
	p        PairConfig
	rx, tx   *queue.Queue
	mrg      bool
	stopping atomic.Bool
	wg       sync.WaitGroup
}

// NewUserspace makes a userspace backend for tap. It does not own tap.
func NewUserspace(tap Tap, opts *UserspaceOptions) *Userspace {
	u := &Userspace{tap: tap, m: new(Metrics), log: slog.New(slog.DiscardHandler)}
	if opts != nil && opts.Metrics != nil {
		u.m = opts.Metrics
	}
	if opts != nil && opts.Logger != nil {
		u.log = opts.Logger
	}
	return u
}

// Name is "userspace".
func (u *Userspace) Name() string { return "userspace" }

// Features are the ring features the datapath implements.
func (u *Userspace) Features() uint64 { return RingFeatures }

// Start validates both queues and starts the TX and RX goroutines.
func (u *Userspace) Start(p PairConfig) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.run != nil {
		return errors.New("userspace datapath already started")
	}
	rx, err := queue.New(p.Memory, p.RX, p.Features)
	if err != nil {
		return fmt.Errorf("set up rx queue: %w", err)
	}
	tx, err := queue.New(p.Memory, p.TX, p.Features)
	if err != nil {
		return fmt.Errorf("set up tx queue: %w", err)
	}
	if err := u.tap.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear TAP read deadline: %w", err)
	}
	s := &session{u: u, p: p, rx: rx, tx: tx, mrg: virtio.HasFeature(p.Features, FeatureMrgRxbuf)}
	s.wg.Add(2)
	go s.txLoop()
	go s.rxLoop()
	u.run = s
	return nil
}

// Stop wakes both goroutines — the RX reader through a past read deadline,
// both kick waits by signalling the kick eventfds (a spurious kick is
// harmless) — and waits for them.
func (u *Userspace) Stop() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.run
	if s == nil {
		return nil
	}
	s.stopping.Store(true)
	var errs []error
	if err := u.tap.SetReadDeadline(time.Unix(1, 0)); err != nil {
		errs = append(errs, fmt.Errorf("set TAP read deadline to stop the reader: %w", err))
	}
	for _, k := range []*eventfd.EventFD{s.p.RX.Kick, s.p.TX.Kick} {
		if err := k.Signal(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("wake datapath: %w", err))
		}
	}
	if len(errs) > 0 {
		// Without the wake-ups the goroutines might never return: keep the
		// session so a later Stop can retry.
		return errors.Join(errs...)
	}
	s.wg.Wait()
	u.run = nil
	return nil
}

// Close stops the datapath; it has no descriptors of its own.
func (u *Userspace) Close() error { return u.Stop() }

func (s *session) broken(q string, err error) {
	s.u.m.MalformedChains.Add(1)
	s.u.log.Warn("userspace datapath: queue stopped", "queue", q, "err", err)
	if s.p.Broken != nil {
		s.p.Broken(fmt.Errorf("%s queue: %w", q, err))
	}
}

// interrupt signals the queue's Call eventfd if the driver wants it.
func (s *session) interrupt(q *queue.Queue, call *eventfd.EventFD) {
	if ok, err := q.Interrupt(call); err != nil {
		s.u.log.Error("userspace datapath: interrupt", "queue", q.Index(), "err", err)
	} else if ok {
		s.u.m.Interrupts.Add(1)
	}
}

// waitKick parks until the driver kicks (or Stop wakes us) and reports
// whether to carry on.
func (s *session) waitKick(kick *eventfd.EventFD, counter *atomic.Uint64) bool {
	if _, err := kick.Wait(); err != nil {
		if !s.stopping.Load() {
			s.u.log.Error("userspace datapath: wait for kick", "err", err)
		}
		return false
	}
	if s.stopping.Load() {
		return false
	}
	counter.Add(1)
	return true
}

func (s *session) txLoop() {
	defer s.wg.Done()
	var c queue.Chain
	buf := make([]byte, 0, maxFrame)
	for !s.stopping.Load() {
		s.tx.DisableNotify()
		done := 0
		for !s.stopping.Load() {
			ok, err := s.tx.Pop(&c)
			if err != nil {
				s.broken("tx", err)
				return
			}
			if !ok {
				break
			}
			if c.WriteLen > 0 {
				s.broken("tx", fmt.Errorf("%w: %w: chain at head %d has %d device-writable bytes", queue.ErrMalformed, ErrDirection, c.Head, c.WriteLen))
				return
			}
			s.transmit(&c, buf)
			if err := s.tx.AddUsed(c.Head, 0); err != nil {
				s.broken("tx", err)
				return
			}
			done++
		}
		if done > 0 {
			s.interrupt(s.tx, s.p.TX.Call)
		}
		more, err := s.tx.EnableNotify()
		if err != nil {
			s.broken("tx", err)
			return
		}
		if !more && !s.waitKick(s.p.TX.Kick, &s.u.m.TxKicks) {
			return
		}
	}
}

// transmit writes the chain's readable bytes (header, then frame) to the
// TAP as one frame. Frames without a whole header or too big are dropped.
func (s *session) transmit(c *queue.Chain, buf []byte) {
	m := s.u.m
	if c.ReadLen < HeaderSize || c.ReadLen > maxFrame {
		m.TxDrops.Add(1)
		return
	}
	buf = buf[:0]
	for _, seg := range c.Readable {
		buf = append(buf, seg...)
	}
	if _, err := s.u.tap.Write(buf); err != nil {
		m.TxDrops.Add(1)
		m.TapWriteErrors.Add(1)
		return
	}
	m.TxPackets.Add(1)
	m.TxBytes.Add(uint64(len(buf) - HeaderSize))
}

func (s *session) rxLoop() {
	defer s.wg.Done()
	m := s.u.m
	buf := make([]byte, maxFrame)
	chains := make([]queue.Chain, 1, 8)
	for !s.stopping.Load() {
		n, err := s.u.tap.Read(buf)
		switch {
		case s.stopping.Load():
			return
		case errors.Is(err, os.ErrClosed):
			s.u.log.Error("userspace datapath: TAP closed under the datapath", "err", err)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case err != nil:
			m.TapReadErrors.Add(1)
			s.u.log.Warn("userspace datapath: read TAP", "err", err)
			time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			continue
		case n < HeaderSize || n == len(buf):
			m.RxDrops.Add(1)
			continue
		}
		var ok bool
		if chains, ok = s.deliver(buf[:n], chains); !ok {
			return
		}
	}
}

// deliver places one frame (header first) in the guest's RX buffers,
// waiting for buffers if there are none. It reports false when the loop
// must end (stopping or broken).
func (s *session) deliver(frame []byte, chains []queue.Chain) ([]queue.Chain, bool) {
	for !s.stopping.Load() {
		s.rx.DisableNotify()
		var placed bool
		var err error
		if s.mrg {
			chains, placed, err = s.placeMerged(frame, chains)
		} else {
			placed, err = s.placeOne(frame, &chains[0])
		}
		if err != nil {
			s.broken("rx", err)
			return chains, false
		}
		if placed {
			return chains, true
		}
		more, err := s.rx.EnableNotify()
		if err != nil {
			s.broken("rx", err)
			return chains, false
		}
		if !more && !s.waitKick(s.p.RX.Kick, &s.u.m.RxKicks) {
			return chains, false
		}
	}
	return chains, false
}

// pop takes one RX chain and checks it is device-writable only.
func (s *session) pop(c *queue.Chain) (bool, error) {
	ok, err := s.rx.Pop(c)
	if ok && c.ReadLen > 0 {
		return false, fmt.Errorf("%w: %w: chain at head %d has %d device-readable bytes", queue.ErrMalformed, ErrDirection, c.Head, c.ReadLen)
	}
	return ok, err
}

// placeOne puts the frame in a single chain (no MRG_RXBUF). A frame larger
// than the chain is dropped and the chain kept for the next one. It reports
// false when the guest has no buffer.
func (s *session) placeOne(frame []byte, c *queue.Chain) (bool, error) {
	ok, err := s.pop(c)
	if err != nil || !ok {
		return false, err
	}
	if uint64(c.WriteLen) < uint64(len(frame)) {
		s.rx.UndoPop(1)
		s.u.m.RxDrops.Add(1)
		return true, nil
	}
	binary.LittleEndian.PutUint16(frame[numBuffersOff:], 1)
	scatter(frame, c.Writable)
	if err := s.rx.AddUsed(c.Head, uint32(len(frame))); err != nil {
		return false, err
	}
	s.received(len(frame))
	return true, nil
}

// placeMerged spreads the frame over as many chains as it needs
// (MRG_RXBUF), recording their number in num_buffers. If the guest has not
// posted enough buffers it gives back the ones taken and reports false.
func (s *session) placeMerged(frame []byte, chains []queue.Chain) ([]queue.Chain, bool, error) {
	var room uint64
	k := 0
	for room < uint64(len(frame)) {
		if k == int(s.rx.Size()) {
			// Even the whole ring cannot hold it: drop rather than wait forever.
			s.rx.UndoPop(k)
			s.u.m.RxDrops.Add(1)
			return chains, true, nil
		}
		if k == len(chains) {
			chains = append(chains, queue.Chain{})
		}
		ok, err := s.pop(&chains[k])
		if err != nil {
			return chains, false, err
		}
		if !ok {
			s.rx.UndoPop(k)
			return chains, false, nil
		}
		room += uint64(chains[k].WriteLen)
		k++
	}
	binary.LittleEndian.PutUint16(frame[numBuffersOff:], uint16(k))
	rest := frame
	for i := range k {
		n := scatter(rest, chains[i].Writable)
		rest = rest[n:]
		if err := s.rx.PutUsed(chains[i].Head, uint32(n)); err != nil {
			return chains, false, err
		}
	}
	s.rx.Publish()
	s.received(len(frame))
	return chains, true, nil
}

func (s *session) received(n int) {
	s.u.m.RxPackets.Add(1)
	s.u.m.RxBytes.Add(uint64(n - HeaderSize))
	s.interrupt(s.rx, s.p.RX.Call)
}

// scatter copies as much of src as fits into segs and returns how much.
func scatter(src []byte, segs [][]byte) int {
	n := 0
	for _, seg := range segs {
		if n == len(src) {
			break
		}
		n += copy(seg, src[n:])
	}
	return n
}
