package queue

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/virtio"
)

// Workers runs the goroutines that serve a device's queues during one
// activation: one per queue, which drains the queue, sleeps on its Kick
// eventfd and drains again when the driver (or Stop) signals it. A device
// makes one Workers per Activate, starts its queues with Serve or Go, and
// calls Stop from Reset. Serve, Go and Stop must not run concurrently with
// each other (a device calls them under its own lock).
type Workers struct {
	// Name prefixes log messages, e.g. "virtio-blk".
	Name string
	// Log gets failures to wait for a kick or to interrupt; nil: discard.
	Log *slog.Logger
	// Broken is told why a queue's worker ended early: the error its
	// drain or handler returned, which is the guest's doing (it wraps
	// ErrMalformed when it comes from the queue). nil: ignored.
	Broken func(queue uint16, err error)

	stopping atomic.Bool
	wg       sync.WaitGroup
	queues   []virtio.QueueConfig
}

// Counters are what a worker counts for one queue; nil fields are not
// counted.
type Counters struct {
	Kicks      *atomic.Uint64 // wake-ups by the driver
	Interrupts *atomic.Uint64 // Call signals
}

// Handler handles one chain a worker popped and returns how many bytes it
// wrote into the chain's device-writable buffers. An error means the chain
// cannot be answered: the worker ends and reports it to Broken.
type Handler func(c *Chain) (written uint32, err error)

// Stopping reports whether Stop was called; long drains check it.
func (w *Workers) Stopping() bool { return w.stopping.Load() }

// Go starts the worker for the queue qc describes: it calls drain now and
// after every kick until Stop. drain handles what the driver made
// available and returns once it has re-enabled notifications and found
// nothing new (EnableNotify reported false), or once Stopping. An error
// from drain ends the worker and goes to Broken.
func (w *Workers) Go(qc virtio.QueueConfig, kicks *atomic.Uint64, drain func() error) {
	w.queues = append(w.queues, qc)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for !w.stopping.Load() {
			if err := drain(); err != nil {
				if w.Broken != nil {
					w.Broken(qc.Index, err)
				}
				return
			}
			if _, err := qc.Kick.Wait(); err != nil {
				if !w.stopping.Load() {
					w.logError("wait for kick", qc.Index, err)
				}
				return
			}
			if kicks != nil && !w.stopping.Load() {
				kicks.Add(1)
			}
		}
	}()
}

// Serve starts the worker for a queue whose chains are independent
// requests: it pops them, passes each to h, returns it to the used ring with
// the length h reported and, after each batch of at most a queue's worth
// (so a driver that keeps the queue full still gets completions), publishes
// the used ring and interrupts through qc.Call if the driver wants it.
func (w *Workers) Serve(q *Queue, qc virtio.QueueConfig, n Counters, h Handler) {
	var c Chain
	w.Go(qc, n.Kicks, func() error {
		for !w.stopping.Load() {
			q.DisableNotify()
			done := 0
			for done < int(q.size) && !w.stopping.Load() {
				ok, err := q.Pop(&c)
				if err != nil {
					return err
				}
				if !ok {
					break
				}
				written, err := h(&c)
				if err != nil {
					return err
				}
				if err := q.PutUsed(c.Head, written); err != nil {
					return err
				}
				done++
			}
			if done > 0 {
				q.Publish()
				w.Interrupt(q, qc.Call, n.Interrupts)
			}
			more, err := q.EnableNotify()
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
}

// Interrupt is q.Interrupt(call) for a worker: it counts the interrupt in
// interrupts (if not nil) and logs a failure to signal.
func (w *Workers) Interrupt(q *Queue, call *eventfd.EventFD, interrupts *atomic.Uint64) {
	ok, err := q.Interrupt(call)
	if err != nil {
		w.logError("interrupt", q.index, err)
	} else if ok && interrupts != nil {
		interrupts.Add(1)
	}
}

// Stop makes every worker return — each finishes at most the chain it is
// handling — and waits for them: when it returns no worker touches guest
// memory or the eventfds. It wakes the workers by signalling their kick
// eventfds (a spurious kick is harmless; a closed one means the transport
// tore the queue down, which woke the worker too).
func (w *Workers) Stop() {
	w.stopping.Store(true)
	for _, qc := range w.queues {
		if err := qc.Kick.Signal(); err != nil && !errors.Is(err, os.ErrClosed) {
			w.logError("wake worker", qc.Index, err)
		}
	}
	w.wg.Wait()
}

func (w *Workers) logError(what string, queue uint16, err error) {
	if w.Log != nil {
		w.Log.Error(w.Name+": "+what, "queue", queue, "err", err)
	}
}
