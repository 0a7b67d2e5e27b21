package net

import (
	"errors"
	"os"
	"sync"
	"time"
)

// fakeTap is an in-memory TAP: frames for the guest are queued with inject,
// frames from the guest arrive on written. Read honours SetReadDeadline
// like an os.File.
type fakeTap struct {
	toGuest chan []byte
	written chan []byte

	mu       sync.Mutex
	offloads []uint
	deadline time.Time
	changed  chan struct{} // closed when the deadline changes
	detached bool          // SetQueueEnabled(false) and not attached again
	queueOps []bool        // every SetQueueEnabled that changed the state
	queueErr error         // returned by SetQueueEnabled when set
}

func newFakeTap() *fakeTap {
	return &fakeTap{toGuest: make(chan []byte, 64), written: make(chan []byte, 64), changed: make(chan struct{})}
}

// SetQueueEnabled records the state; like the kernel behind hostnet, a
// state the queue already has is no change.
func (f *fakeTap) SetQueueEnabled(on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queueErr != nil {
		return f.queueErr
	}
	if f.detached == on {
		f.detached = !on
		f.queueOps = append(f.queueOps, on)
	}
	return nil
}

func (f *fakeTap) attached() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.detached
}

func (f *fakeTap) failQueueOps(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queueErr = err
}

func (f *fakeTap) Fd() int { return -1 }

func (f *fakeTap) SetOffload(flags uint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offloads = append(f.offloads, flags)
	return nil
}

func (f *fakeTap) Write(p []byte) (int, error) {
	f.written <- append([]byte(nil), p...)
	return len(p), nil
}

func (f *fakeTap) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadline = t
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

func (f *fakeTap) Read(p []byte) (int, error) {
	for {
		f.mu.Lock()
		dl, changed := f.deadline, f.changed
		f.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = time.After(d)
		}
		select {
		case frame := <-f.toGuest:
			if len(frame) > len(p) {
				return 0, errors.New("fake tap: frame larger than read buffer")
			}
			return copy(p, frame), nil
		case <-changed:
		case <-timeout:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (f *fakeTap) inject(frame []byte) { f.toGuest <- frame }

func (f *fakeTap) lastOffload() (uint, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.offloads) == 0 {
		return 0, false
	}
	return f.offloads[len(f.offloads)-1], true
}

// fakeBackend records what the device asks of it.
type fakeBackend struct {
	features uint64
	startErr error

	mu      sync.Mutex
	started []PairConfig
	stops   int
	closes  int
}

func (b *fakeBackend) Name() string     { return "fake" }
func (b *fakeBackend) Features() uint64 { return b.features }

func (b *fakeBackend) Start(p PairConfig) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.startErr != nil {
		return b.startErr
	}
	b.started = append(b.started, p)
	return nil
}

func (b *fakeBackend) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stops++
	return nil
}

func (b *fakeBackend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closes++
	return nil
}
