package net

import (
	"time"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// Backend moves packets for one queue pair between the guest's rings and a
// TAP queue: the kernel's vhost-net (package vhost) or the userspace
// datapath in this package.
type Backend interface {
	// Name says which datapath this is ("vhost-net", "userspace") for logs
	// and metrics.
	Name() string
	// Features is the set of virtio feature bits the backend can serve; the
	// device offers only bits both it and every backend support (offload bits
	// are not the backend's business: vhost-net passes the virtio-net header
	// through to the TAP untouched).
	Features() uint64
	// Start begins serving the pair with the features the driver accepted.
	Start(p PairConfig) error
	// Stop ends serving; when it returns the backend touches neither rings
	// nor eventfds. Start may be called again afterwards (driver reset and
	// reload).
	Stop() error
	// Close releases the backend's own descriptors (not the TAP, not the
	// eventfds).
	Close() error
}

// PairConfig is what a backend gets to serve one queue pair.
type PairConfig struct {
	Features uint64 // acked by the driver
	Memory   *memory.Memory
	RX, TX   virtio.QueueConfig
	Broken   func(error) // guest handed garbage: mark the device NEEDS_RESET
}

// Tap is one TAP queue as virtio-net sees it: opened with IFF_TAP|IFF_NO_PI|
// IFF_VNET_HDR and a 12-byte vnet header. virtio never imports hostnet;
// hostnet.Tap satisfies this and cmd/hlsvmm wires them together.
type Tap interface {
	Fd() int                     // borrowed, for VHOST_NET_SET_BACKEND
	SetOffload(flags uint) error // TUNSETOFFLOAD, flags unix.TUN_F_*
	Read(p []byte) (int, error)  // one frame, 12-byte virtio_net_hdr_v1 first; parks in the poller
	Write(p []byte) (int, error) // one frame, header first
	// SetReadDeadline makes a parked or future Read return an error wrapping
	// os.ErrDeadlineExceeded once t has passed; the zero time clears it
	// (os.File semantics). The userspace datapath uses it to stop its reader,
	// since it does not own the TAP and cannot close it.
	SetReadDeadline(t time.Time) error
	// SetQueueEnabled attaches (true) or detaches (false) this queue to or
	// from its TAP (TUNSETQUEUE): the kernel steers received frames only to
	// attached queues, so the device detaches the queues of pairs the
	// driver does not use. Queues start attached; setting the state a queue
	// already has does nothing. The device calls it only when it has more
	// than one pair, and never for pair 0.
	SetQueueEnabled(on bool) error
}
