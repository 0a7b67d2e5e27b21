package console

import (
	"io"
	"sync"
	"sync/atomic"
)

// outQueue decouples guest output (written on vCPU threads) from a sink
// that may be slow: a goroutine drains a bounded buffer into the sink.
// When the buffer is full the producer either waits (block) or the bytes
// are dropped and counted, so a stalled TCP client never stalls the guest.
type outQueue struct {
	w       io.Writer
	limit   int
	block   bool
	dropped *atomic.Uint64 // may be nil
	onErr   func(error)    // called once, from the drain goroutine

	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
	failed bool
	done   chan struct{}
}

func newOutQueue(w io.Writer, limit int, block bool, dropped *atomic.Uint64, onErr func(error)) *outQueue {
	q := &outQueue{w: w, limit: limit, block: block, dropped: dropped, onErr: onErr, done: make(chan struct{})}
	q.cond = sync.NewCond(&q.mu)
	go q.run()
	return q
}

// Write queues p. It never fails; see the type comment for a full queue.
func (q *outQueue) Write(p []byte) (int, error) {
	n := len(p)
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(p) > 0 {
		if q.closed || q.failed {
			q.drop(len(p))
			break
		}
		space := q.limit - len(q.buf)
		if space == 0 {
			if !q.block {
				q.drop(len(p))
				break
			}
			q.cond.Wait()
			continue
		}
		k := min(space, len(p))
		q.buf = append(q.buf, p[:k]...)
		p = p[k:]
		q.cond.Broadcast()
	}
	return n, nil
}

func (q *outQueue) drop(n int) {
	if q.dropped != nil {
		q.dropped.Add(uint64(n))
	}
}

func (q *outQueue) run() {
	defer close(q.done)
	var chunk []byte
	q.mu.Lock()
	for {
		for len(q.buf) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.buf) == 0 {
			q.mu.Unlock()
			return
		}
		chunk, q.buf = q.buf, chunk[:0]
		q.cond.Broadcast() // room for a waiting producer
		q.mu.Unlock()
		_, err := q.w.Write(chunk)
		q.mu.Lock()
		if err != nil {
			q.failed = true
			q.drop(len(q.buf))
			q.buf = q.buf[:0]
			q.cond.Broadcast()
			q.mu.Unlock()
			if q.onErr != nil {
				q.onErr(err)
			}
			return
		}
	}
}

// close writes out what is queued and stops the drain goroutine. A sink
// that blocks delays close: give network sinks a write deadline first.
func (q *outQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	<-q.done
}
