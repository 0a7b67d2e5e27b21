package blk

import "sync/atomic"

// Metrics are one device's counters, updated by its workers with atomics
// and read at any time (the Prometheus exporter takes a Snapshot).
type Metrics struct {
	Reads           atomic.Uint64 // IN requests completed OK
	Writes          atomic.Uint64 // OUT requests completed OK
	Flushes         atomic.Uint64 // FLUSH requests completed OK
	GetIDs          atomic.Uint64 // GET_ID requests completed OK
	ReadBytes       atomic.Uint64
	WriteBytes      atomic.Uint64
	Errors          atomic.Uint64 // requests answered IOERR (bad request or I/O error)
	Unsupported     atomic.Uint64 // requests answered UNSUPP
	Kicks           atomic.Uint64 // driver notifications, all queues
	Interrupts      atomic.Uint64 // Call eventfd signals, all queues
	MalformedChains atomic.Uint64 // guest errors that broke a queue
}

// MetricsSnapshot is a plain copy of Metrics.
type MetricsSnapshot struct {
	Reads, Writes, Flushes, GetIDs uint64
	ReadBytes, WriteBytes          uint64
	Errors, Unsupported            uint64
	Kicks, Interrupts              uint64
	MalformedChains                uint64
}

// Snapshot reads every counter (each atomically, not all at one instant).
func (m *Metrics) Snapshot() MetricsSnapshot {
	return MetricsSnapshot{
		Reads: m.Reads.Load(), Writes: m.Writes.Load(), Flushes: m.Flushes.Load(), GetIDs: m.GetIDs.Load(),
		ReadBytes: m.ReadBytes.Load(), WriteBytes: m.WriteBytes.Load(),
		Errors: m.Errors.Load(), Unsupported: m.Unsupported.Load(),
		Kicks: m.Kicks.Load(), Interrupts: m.Interrupts.Load(), MalformedChains: m.MalformedChains.Load(),
	}
}
