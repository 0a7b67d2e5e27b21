package hostnet

import "time"

// TapQueue is one queue of a Tap seen on its own, the shape a virtio-net
// queue pair's backend wants: the queue's fd, its frames, its read
// deadline, and the device's offloads. It borrows everything from the Tap,
// which stays the owner (closing the Tap ends the queue).
type TapQueue struct {
	t *Tap
	i int
}

// Queue returns the view of queue i (0 <= i < Queues()).
func (t *Tap) Queue(i int) *TapQueue { return &TapQueue{t: t, i: i} }

// Fd is the queue's file descriptor (borrowed), -1 once the Tap is closed.
func (q *TapQueue) Fd() int {
	fd, err := q.t.Fd(q.i)
	if err != nil {
		return -1
	}
	return fd
}

// SetOffload sets the whole device's offloads from TUN_F_* flags.
func (q *TapQueue) SetOffload(flags uint) error { return q.t.SetOffload(Offload(flags)) }

// SetQueueEnabled attaches or detaches the queue (TUNSETQUEUE); see
// Tap.SetQueueEnabled.
func (q *TapQueue) SetQueueEnabled(on bool) error { return q.t.SetQueueEnabled(q.i, on) }

// Read reads one frame, virtio-net header first, waiting in the poller.
func (q *TapQueue) Read(b []byte) (int, error) { return q.t.ReadQueue(q.i, b) }

// Write writes one frame, virtio-net header first.
func (q *TapQueue) Write(b []byte) (int, error) { return q.t.WriteQueue(q.i, b) }

// SetReadDeadline makes a parked Read return os.ErrDeadlineExceeded at t;
// the zero time clears it.
func (q *TapQueue) SetReadDeadline(t time.Time) error {
	f, err := q.t.File(q.i)
	if err != nil {
		return err
	}
	return f.SetReadDeadline(t)
}
