package net

import "sync/atomic"

// Metrics are one device's counters, updated by its datapath with atomics
// and read at any time (the Prometheus exporter takes a Snapshot). Byte
// counts are frame bytes without the virtio-net header.
type Metrics struct {
	RxPackets       atomic.Uint64 // frames delivered to the guest
	RxBytes         atomic.Uint64
	RxDrops         atomic.Uint64 // frames from the TAP the guest had no room for
	RxKicks         atomic.Uint64 // driver notifications on RX queues
	TxPackets       atomic.Uint64 // frames written to the TAP
	TxBytes         atomic.Uint64
	TxDrops         atomic.Uint64 // guest frames not written (bad size, TAP error)
	TxKicks         atomic.Uint64
	Interrupts      atomic.Uint64 // Call eventfd signals, all queues
	MalformedChains atomic.Uint64 // guest errors that broke a queue
	TapReadErrors   atomic.Uint64
	TapWriteErrors  atomic.Uint64
}

// MetricsSnapshot is a plain copy of Metrics.
type MetricsSnapshot struct {
	RxPackets, RxBytes, RxDrops, RxKicks uint64
	TxPackets, TxBytes, TxDrops, TxKicks uint64
	Interrupts, MalformedChains          uint64
	TapReadErrors, TapWriteErrors        uint64
}

// Snapshot reads every counter (each atomically, not all at one instant).
func (m *Metrics) Snapshot() MetricsSnapshot {
	return MetricsSnapshot{
		RxPackets: m.RxPackets.Load(), RxBytes: m.RxBytes.Load(), RxDrops: m.RxDrops.Load(), RxKicks: m.RxKicks.Load(),
		TxPackets: m.TxPackets.Load(), TxBytes: m.TxBytes.Load(), TxDrops: m.TxDrops.Load(), TxKicks: m.TxKicks.Load(),
		Interrupts: m.Interrupts.Load(), MalformedChains: m.MalformedChains.Load(),
		TapReadErrors: m.TapReadErrors.Load(), TapWriteErrors: m.TapWriteErrors.Load(),
	}
}
