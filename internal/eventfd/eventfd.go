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

// EventFD owns one non-blocking eventfd registered with Go's poller, so Wait
// parks the goroutine instead of a thread and Close wakes any waiter.
type EventFD struct {
	f     *os.File
	fd    int
	close sync.Once
	err   error
}

// New creates an eventfd with a zero counter.
func New() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	return &EventFD{f: os.NewFile(uintptr(fd), "eventfd"), fd: fd}, nil
}

// Fd returns the descriptor for handing to the kernel (KVM_IOEVENTFD,
// KVM_IRQFD, VHOST_SET_VRING_KICK/CALL). The EventFD keeps ownership: the
// number is valid until Close.
func (e *EventFD) Fd() int { return e.fd }

// Signal adds one to the counter, waking a waiter or making KVM/vhost act.
func (e *EventFD) Signal() error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	if _, err := e.f.Write(b[:]); err != nil {
		return fmt.Errorf("signal eventfd: %w", err)
	}
	return nil
}

// Wait blocks until the counter is non-zero, then returns and clears it.
// After Close it returns an error wrapping os.ErrClosed.
func (e *EventFD) Wait() (uint64, error) {
	var b [8]byte
	if _, err := e.f.Read(b[:]); err != nil {
		return 0, fmt.Errorf("wait on eventfd: %w", err)
	}
	return binary.NativeEndian.Uint64(b[:]), nil
}

// Clear resets the counter without blocking and reports whether it was set.
func (e *EventFD) Clear() (bool, error) {
	var b [8]byte
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

// Close releases the descriptor and wakes any goroutine in Wait. It is
// idempotent.
func (e *EventFD) Close() error {
	e.close.Do(func() { e.err = e.f.Close() })
	return e.err
}
