// Package eventfd wraps Linux eventfds, the doorbells between KVM, vhost-net
// and hlsvmm: KVM signals one when the guest kicks a queue (ioeventfd), and
// KVM injects an interrupt when one is signalled (irqfd).
package eventfd

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// EventFD owns one non-blocking eventfd. It joins Go's poller only when a
// goroutine first Waits on it (the userspace datapath and the queues hlsvmm
// serves itself), so Wait parks the goroutine instead of a thread and Close
// wakes any waiter. An eventfd only handed to KVM and vhost-net never joins
// it: the poller would otherwise wake on every kick and interrupt of a
// datapath that never passes through hlsvmm.
type EventFD struct {
	mu  sync.RWMutex // Close takes it exclusively; the fd is valid while it is held
	fd  int          // -1 once closed
	f   *os.File     // nil until the first Wait; then it owns fd
	err error        // Close's result
}

// New creates an eventfd with a zero counter.
func New() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	return &EventFD{fd: fd}, nil
}

// Fd returns the descriptor for handing to the kernel (KVM_IOEVENTFD,
// KVM_IRQFD, VHOST_SET_VRING_KICK/CALL). The EventFD keeps ownership: the
// number is valid until Close.
func (e *EventFD) Fd() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.fd
}

// Signal adds one to the counter, waking a waiter or making KVM/vhost act.
func (e *EventFD) Signal() error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.fd < 0 {
		return fmt.Errorf("signal eventfd: %w", os.ErrClosed)
	}
	if _, err := unix.Write(e.fd, b[:]); err != nil {
		return fmt.Errorf("signal eventfd: %w", err)
	}
	return nil
}

// Wait blocks until the counter is non-zero, then returns and clears it.
// After Close it returns an error wrapping os.ErrClosed.
func (e *EventFD) Wait() (uint64, error) {
	f, err := e.file()
	if err != nil {
		return 0, fmt.Errorf("wait on eventfd: %w", err)
	}
	var b [8]byte
	if _, err := f.Read(b[:]); err != nil {
		return 0, fmt.Errorf("wait on eventfd: %w", err)
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}

// file returns the poller-registered file, creating it on first use.
func (e *EventFD) file() (*os.File, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd < 0 {
		return nil, os.ErrClosed
	}
	if e.f == nil {
		e.f = os.NewFile(uintptr(e.fd), "eventfd")
	}
	return e.f, nil
}

// Clear resets the counter without blocking and reports whether it was set.
func (e *EventFD) Clear() (bool, error) {
	var b [8]byte
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.fd < 0 {
		return false, fmt.Errorf("clear eventfd: %w", os.ErrClosed)
	}
	_, err := unix.Read(e.fd, b[:])
	switch err {
	case nil:
		return true, nil
	case unix.EAGAIN:
		return false, nil
	default:
		return false, fmt.Errorf("clear eventfd: %w", err)
	}
}

// Pending reports whether the counter is non-zero, without clearing it:
// for diagnostics (a Call eventfd that stays set while its irqfd is
// attached means KVM is not listening).
func (e *EventFD) Pending() (bool, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.fd < 0 {
		return false, fmt.Errorf("poll eventfd: %w", os.ErrClosed)
	}
	fds := []unix.PollFd{{Fd: int32(e.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return false, fmt.Errorf("poll eventfd: %w", err)
		}
		return n > 0 && fds[0].Revents&unix.POLLIN != 0, nil
	}
}

// Close releases the descriptor and wakes any goroutine in Wait. It is
// idempotent.
func (e *EventFD) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd < 0 {
		return e.err
	}
	if e.f != nil {
		e.err = e.f.Close()
	} else {
		e.err = unix.Close(e.fd)
	}
	e.fd = -1
	return e.err
}
