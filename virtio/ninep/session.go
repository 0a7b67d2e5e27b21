package ninep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// How one activation is served.
//
// github.com/hugelgupf/p9 serves a connection, Server.Handle(t, r): it
// reads T-messages from t and, from as many goroutines as there are
// requests in flight, writes each R-message to r (one message's writes are
// contiguous, serialised by the server). A session is one such connection:
//
//   - The queue goroutine pops chains, checks the framing (the header's
//     size fits the readable part and the negotiated msize, the writable
//     part can hold at least an Rlerror), copies the message out of guest
//     memory (so the guest cannot change it while it is decoded), and
//     queues it to requestReader, which the server reads as its stream.
//   - Replies are matched to chains by tag. The guest's tags cannot be
//     trusted to be unique, and the server silently drops a request whose
//     tag is already in flight, so every message gets an internal tag — the
//     index of a free slot in the in-flight table, at most the queue size —
//     and the guest's tag goes back into the reply. Tflush's oldtag is
//     translated the same way.
//   - An Rflush reaches the used ring only after the reply of the request
//     it names: 9P says a reply that arrives before the Rflush counts and
//     one after it was cancelled, but the server never cancels and clears
//     the tag before sending its reply, so its Tflush handler can answer
//     first; the session holds that Rflush back until the flushed chain is
//     returned.
//   - replyWriter parses the server's output stream: a 7-byte header (size,
//     type, tag), then size-7 bytes streamed straight into the chain's
//     writable buffers (no copy for Rread data), then the chain is returned
//     to the used ring.
//
// Guest-caused failures mark the device broken (Activation.Broken): bad
// framing, more requests in flight than descriptors, a reply that does not
// fit the chain, a reply whose tag matches nothing (the server answers a
// message whose body does not decode with tag NOTAG, so which chain it was
// is unknowable), or the server ending the connection (a message beyond the
// msize it negotiated).
//
// The library answers Txattrwalk failures with EINVAL whatever the File
// returned, and Linux then refuses to exec any file (security.capability
// lookups must fail with ENODATA), so the session answers Txattrwalk itself:
// the share has no extended attributes.

// 9P message types and sizes the session needs to look at.
const (
	hdrSize     = 7 // size[4] type[1] tag[2]
	msgRlerror  = 7
	msgTxattrwk = 30
	msgTversion = 100
	msgTflush   = 108
	replyRread  = 117
	noTag       = 0xffff
	rlerrorSize = hdrSize + 4
	rreadHdr    = hdrSize + 4 // count[4], then the data
)

// Linux errno values sent in Rlerror.
const (
	errnoENODATA    = 61
	errnoEOPNOTSUPP = 95
)

// ErrFraming is wrapped (with queue.ErrMalformed) when a chain does not hold
// a well-framed 9P message or cannot hold its reply.
var ErrFraming = errors.New("9P message framing")

type request struct {
	head     uint16
	guestTag uint16
	writable [][]byte
	writeLen uint32

	flushes  *request   // a Tflush: the request it names, in flight when admitted
	used     bool       // returned to the used ring
	flushers []*request // Rflushes held back until this request is used
	replyLen uint32     // of a held-back Rflush
	rtype    uint8      // the reply's type, for the metrics
}

type session struct {
	d     *Device
	a     virtio.Activation
	q     *queue.Queue
	call  *eventfd.EventFD
	w     *queue.Workers // the queue goroutine; w.Stopping() is the session's stop flag
	chain queue.Chain    // the queue goroutine's

	msgs       chan []byte
	done       chan struct{} // closed by stop: the reader returns EOF
	stopOnce   sync.Once
	handleDone chan struct{}

	mu       sync.Mutex
	broken   bool
	msize    uint32
	pending  int64      // admitted, not answered: taken off Metrics.InFlight at stop
	inflight []*request // by internal tag
	free     []uint16
	byGuest  map[uint16]uint16 // guest tag → internal tag, for Tflush
}

func startSession(d *Device, a virtio.Activation) (*session, error) {
	qc := a.Queues[0]
	q, err := queue.New(a.Memory, qc, a.Features)
	if err != nil {
		return nil, fmt.Errorf("set up request queue: %w", err)
	}
	s := &session{
		d: d, a: a, q: q, call: qc.Call,
		msgs:       make(chan []byte, qc.Size),
		done:       make(chan struct{}),
		handleDone: make(chan struct{}),
		msize:      d.maxSize,
		inflight:   make([]*request, qc.Size),
		byGuest:    make(map[uint16]uint16),
	}
	for i := range qc.Size {
		s.free = append(s.free, qc.Size-1-i)
	}
	s.w = &queue.Workers{Name: "virtio-9p", Log: d.log, Broken: func(_ uint16, err error) { s.fail(err) }}
	go s.serve()
	s.w.Go(qc, &d.metrics.Kicks, s.drain)
	return s, nil
}

// stop ends the session and waits until neither the queue goroutine nor
// any server goroutine runs; then every fid is clunked (the server closes
// their files when its connection ends).
func (s *session) stop() {
	s.w.Stop()
	s.stopOnce.Do(func() { close(s.done) })
	<-s.handleDone
	s.mu.Lock()
	s.d.metrics.InFlight.Add(-s.pending)
	s.pending = 0
	s.mu.Unlock()
}

func (s *session) serve() {
	defer close(s.handleDone)
	err := s.d.server.Handle(&requestReader{msgs: s.msgs, done: s.done}, &replyWriter{s: s})
	if !s.w.Stopping() {
		s.fail(fmt.Errorf("%w: 9P server ended the session (%v)", queue.ErrMalformed, err))
	}
}

// fail marks the device broken once. It must be called without s.mu.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.broken || s.w.Stopping() {
		s.mu.Unlock()
		return
	}
	s.broken = true
	s.mu.Unlock()
	s.d.metrics.MalformedChains.Add(1)
	err = fmt.Errorf("virtio-9p %s: %w", s.d.share.Tag, err)
	s.d.log.Warn("device needs reset", "err", err)
	if s.a.Broken != nil {
		s.a.Broken(err)
	}
}

// drain admits every chain the driver made available, until it finds none
// with notifications re-enabled. A broken session leaves the queue alone
// until Reset.
func (s *session) drain() error {
	for {
		s.mu.Lock()
		if s.broken || s.w.Stopping() {
			s.mu.Unlock()
			return nil
		}
		s.q.DisableNotify()
		var err error
		for err == nil {
			var ok bool
			if ok, err = s.q.Pop(&s.chain); err != nil || !ok {
				break
			}
			err = s.admit(&s.chain)
		}
		more := false
		if err == nil {
			more, err = s.q.EnableNotify()
		}
		s.mu.Unlock()
		if err != nil || !more {
			return err
		}
	}
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", queue.ErrMalformed, ErrFraming, fmt.Sprintf(format, args...))
}

// admit checks one chain's framing and hands its message to the server.
// s.mu is held.
func (s *session) admit(c *queue.Chain) error {
	var hdr [hdrSize]byte
	if c.ReadLen < hdrSize {
		return malformed("chain at head %d: %d readable bytes, a 9P header needs %d", c.Head, c.ReadLen, hdrSize)
	}
	gather(hdr[:], c.Readable)
	size := binary.LittleEndian.Uint32(hdr[0:])
	typ := hdr[4]
	tag := binary.LittleEndian.Uint16(hdr[5:])
	switch {
	case size < hdrSize || size > c.ReadLen:
		return malformed("chain at head %d: message size %d, chain has %d readable bytes", c.Head, size, c.ReadLen)
	case size > s.msize:
		return malformed("chain at head %d: message size %d beyond msize %d", c.Head, size, s.msize)
	case c.WriteLen < rlerrorSize:
		return malformed("chain at head %d: %d writable bytes, a reply needs at least %d", c.Head, c.WriteLen, rlerrorSize)
	}
	r := &request{head: c.Head, guestTag: tag, writable: append([][]byte(nil), c.Writable...), writeLen: c.WriteLen}
	msg := make([]byte, size)
	gather(msg, c.Readable)
	if typ == msgTxattrwk {
		// fid[4] newfid[4] name[s]: a named attribute does not exist, and
		// there is no list.
		code := uint32(errnoEOPNOTSUPP)
		if size >= hdrSize+10 && binary.LittleEndian.Uint16(msg[hdrSize+8:]) > 0 {
			code = errnoENODATA
		}
		var reply [rlerrorSize]byte
		binary.LittleEndian.PutUint32(reply[0:], rlerrorSize)
		reply[4] = msgRlerror
		binary.LittleEndian.PutUint16(reply[5:], tag)
		binary.LittleEndian.PutUint32(reply[7:], code)
		scatterAt(r.writable, 0, reply[:])
		r.rtype = msgRlerror
		s.admitted()
		return s.complete(r, rlerrorSize)
	}
	if len(s.free) == 0 {
		return malformed("chain at head %d: more than %d requests in flight", c.Head, len(s.inflight))
	}
	itag := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	binary.LittleEndian.PutUint16(msg[5:], itag)
	switch {
	case typ == msgTversion && size >= hdrSize+4:
		// msize[4] version[s]: cap what the guest may negotiate.
		if m := binary.LittleEndian.Uint32(msg[hdrSize:]); m > s.d.maxSize {
			binary.LittleEndian.PutUint32(msg[hdrSize:], s.d.maxSize)
		} else if m != 0 {
			s.msize = m
		}
	case typ == msgTflush && size >= hdrSize+2:
		old := binary.LittleEndian.Uint16(msg[hdrSize:])
		it, ok := s.byGuest[old]
		if ok {
			r.flushes = s.inflight[it]
		} else {
			it = noTag // not in flight: the server answers at once
		}
		binary.LittleEndian.PutUint16(msg[hdrSize:], it)
	}
	s.inflight[itag] = r
	s.byGuest[tag] = itag
	s.admitted()
	s.msgs <- msg // never blocks: the channel has room for every internal tag
	return nil
}

// admitted counts a request in flight. s.mu is held.
func (s *session) admitted() {
	s.pending++
	s.d.metrics.InFlight.Add(1)
}

// answered counts a reply of n bytes returned to the used ring. s.mu is
// held.
func (s *session) answered(r *request, n uint32) {
	m := s.d.metrics
	s.pending--
	m.InFlight.Add(-1)
	m.Requests.Add(1)
	switch {
	case r.rtype == msgRlerror:
		m.Errors.Add(1)
	case r.rtype == replyRread && n >= rreadHdr:
		m.ReadBytes.Add(uint64(n - rreadHdr))
	}
}

// complete returns the chain with n reply bytes and interrupts the driver
// if it wants that; then the Rflushes held back for it follow. s.mu is
// held.
func (s *session) complete(r *request, n uint32) error {
	if err := s.q.AddUsed(r.head, n); err != nil {
		return err
	}
	r.used = true
	s.answered(r, n)
	s.w.Interrupt(s.q, s.call, &s.d.metrics.Interrupts)
	for _, f := range r.flushers {
		if err := s.complete(f, f.replyLen); err != nil {
			return err
		}
	}
	r.flushers = nil
	return nil
}

// completeReply completes a reply the server wrote, holding an Rflush back
// while the request it names is still in flight. s.mu is held.
func (s *session) completeReply(r *request, n uint32) error {
	if old := r.flushes; old != nil && !old.used {
		r.replyLen = n
		old.flushers = append(old.flushers, r)
		return nil
	}
	return s.complete(r, n)
}

// release frees an internal tag. s.mu is held.
func (s *session) release(itag uint16, r *request) {
	s.inflight[itag] = nil
	s.free = append(s.free, itag)
	if t, ok := s.byGuest[r.guestTag]; ok && t == itag {
		delete(s.byGuest, r.guestTag)
	}
}

// requestReader is the server's input stream: the admitted messages, back
// to back. Only one server goroutine reads at a time.
type requestReader struct {
	msgs <-chan []byte
	done <-chan struct{}
	cur  []byte
}

func (r *requestReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		select {
		case <-r.done:
			return 0, io.EOF
		default:
		}
		select {
		case r.cur = <-r.msgs:
		case <-r.done:
			return 0, io.EOF
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *requestReader) Close() error { return nil }

// replyWriter is the server's output stream, parsed back into replies.
// The server serialises its writes.
type replyWriter struct {
	s    *session
	hdr  [hdrSize]byte
	nhdr int
	size uint32 // of the reply being written
	got  uint32 // bytes of it seen
	itag uint16
	req  *request // nil: tag matches nothing
	fits bool
}

func (w *replyWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if w.nhdr < hdrSize {
			k := copy(w.hdr[w.nhdr:], p)
			w.nhdr += k
			p = p[k:]
			if w.nhdr < hdrSize {
				break
			}
			w.begin()
		} else {
			k := int(min(uint64(len(p)), uint64(w.size-w.got)))
			w.body(p[:k])
			p = p[k:]
		}
		if w.got == w.size {
			if err := w.finish(); err != nil {
				w.s.fail(err)
			}
		}
	}
	return total, nil
}

func (w *replyWriter) Close() error { return nil }

func (w *replyWriter) begin() {
	s := w.s
	w.size = max(binary.LittleEndian.Uint32(w.hdr[0:]), hdrSize)
	w.got = hdrSize
	w.itag = binary.LittleEndian.Uint16(w.hdr[5:])
	s.mu.Lock()
	defer s.mu.Unlock()
	w.req = nil
	if int(w.itag) < len(s.inflight) {
		w.req = s.inflight[w.itag]
	}
	w.fits = w.req != nil && w.size <= w.req.writeLen
	if w.fits && !s.w.Stopping() && !s.broken {
		h := w.hdr
		binary.LittleEndian.PutUint16(h[5:], w.req.guestTag)
		scatterAt(w.req.writable, 0, h[:])
	}
}

func (w *replyWriter) body(p []byte) {
	s := w.s
	s.mu.Lock()
	if w.fits && !s.w.Stopping() && !s.broken {
		scatterAt(w.req.writable, w.got, p)
	}
	s.mu.Unlock()
	w.got += uint32(len(p))
}

func (w *replyWriter) finish() error {
	s := w.s
	w.nhdr = 0
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w.Stopping() || s.broken {
		return nil
	}
	switch {
	case w.req == nil:
		return fmt.Errorf("%w: %w: reply with tag %#x (type %d) matches no request: the guest sent a message that does not decode", queue.ErrMalformed, ErrFraming, w.itag, w.hdr[4])
	case !w.fits:
		return malformed("chain at head %d: reply of %d bytes, chain has %d writable bytes", w.req.head, w.size, w.req.writeLen)
	}
	s.release(w.itag, w.req)
	w.req.rtype = w.hdr[4]
	return s.completeReply(w.req, w.size)
}

// gather fills dst from the start of segs.
func gather(dst []byte, segs [][]byte) {
	n := 0
	for _, seg := range segs {
		if n == len(dst) {
			return
		}
		n += copy(dst[n:], seg)
	}
}

// scatterAt copies src into segs starting at byte offset off; whatever
// does not fit is dropped (callers check the total first).
func scatterAt(segs [][]byte, off uint32, src []byte) {
	o := uint64(off)
	for _, seg := range segs {
		if len(src) == 0 {
			return
		}
		if o >= uint64(len(seg)) {
			o -= uint64(len(seg))
			continue
		}
		n := copy(seg[o:], src)
		src = src[n:]
		o = 0
	}
}
