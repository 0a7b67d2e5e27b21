package ninep

import "sync/atomic"

// Metrics are one device's counters, updated by its session with atomics
// and read at any time (the Prometheus exporter takes a Snapshot). They
// outlive sessions: a reset does not clear them.
type Metrics struct {
	Requests        atomic.Uint64 // replies returned to the used ring (every T-message answered)
	Errors          atomic.Uint64 // of which Rlerror
	ReadBytes       atomic.Uint64 // file data in Rread replies
	InFlight        atomic.Int64  // requests admitted and not yet answered (a gauge)
	Kicks           atomic.Uint64 // driver notifications of the request queue
	Interrupts      atomic.Uint64 // Call eventfd signals
	MalformedChains atomic.Uint64 // guest errors that broke the queue
}

// MetricsSnapshot is a plain copy of Metrics.
type MetricsSnapshot struct {
	Requests, Errors  uint64
	ReadBytes         uint64
	InFlight          int64
	Kicks, Interrupts uint64
	MalformedChains   uint64
}

// Snapshot reads every counter (each atomically, not all at one instant).
func (m *Metrics) Snapshot() MetricsSnapshot {
	return MetricsSnapshot{
		Requests: m.Requests.Load(), Errors: m.Errors.Load(), ReadBytes: m.ReadBytes.Load(),
		InFlight: m.InFlight.Load(),
		Kicks:    m.Kicks.Load(), Interrupts: m.Interrupts.Load(), MalformedChains: m.MalformedChains.Load(),
	}
}
