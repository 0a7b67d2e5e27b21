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

	// The device model's own, counted whatever the datapath.
	ActivePairs atomic.Uint64                 // queue pairs in use: 0 until DRIVER_OK, then 1 until VQ_PAIRS_SET
	CtrlOK      [NumCtrlClasses]atomic.Uint64 // control commands answered VIRTIO_NET_OK, by class
	CtrlErr     [NumCtrlClasses]atomic.Uint64 // control commands answered VIRTIO_NET_ERR, by class
}

// CtrlClass groups control commands for counting.
type CtrlClass int

const (
	CtrlClassRX    CtrlClass = iota // VIRTIO_NET_CTRL_RX: promiscuous, all-multicast
	CtrlClassMAC                    // VIRTIO_NET_CTRL_MAC: filter tables, address
	CtrlClassMQ                     // VIRTIO_NET_CTRL_MQ: queue pairs
	CtrlClassOther                  // every other class (all answered VIRTIO_NET_ERR)
	NumCtrlClasses
)

// String is the class's metric label: rx, mac, mq or other.
func (c CtrlClass) String() string {
	switch c {
	case CtrlClassRX:
		return "rx"
	case CtrlClassMAC:
		return "mac"
	case CtrlClassMQ:
		return "mq"
	}
	return "other"
}

// MetricsSnapshot is a plain copy of Metrics' datapath counters.
type MetricsSnapshot struct {
	RxPackets, RxBytes, RxDrops, RxKicks uint64
	TxPackets, TxBytes, TxDrops, TxKicks uint64
	Interrupts, MalformedChains          uint64
	TapReadErrors, TapWriteErrors        uint64
}

// Snapshot reads every datapath counter (each atomically, not all at one
// instant).
func (m *Metrics) Snapshot() MetricsSnapshot {
	return MetricsSnapshot{
		RxPackets: m.RxPackets.Load(), RxBytes: m.RxBytes.Load(), RxDrops: m.RxDrops.Load(), RxKicks: m.RxKicks.Load(),
		TxPackets: m.TxPackets.Load(), TxBytes: m.TxBytes.Load(), TxDrops: m.TxDrops.Load(), TxKicks: m.TxKicks.Load(),
		Interrupts: m.Interrupts.Load(), MalformedChains: m.MalformedChains.Load(),
		TapReadErrors: m.TapReadErrors.Load(), TapWriteErrors: m.TapWriteErrors.Load(),
	}
}

// ControlSnapshot is a plain copy of the device model's own counters: valid
// with every datapath, vhost-net included, since hlsvmm serves the control
// queue itself.
type ControlSnapshot struct {
	ActivePairs     uint64
	CtrlOK, CtrlErr [NumCtrlClasses]uint64
}

// ControlSnapshot reads the device model's counters.
func (m *Metrics) ControlSnapshot() ControlSnapshot {
	s := ControlSnapshot{ActivePairs: m.ActivePairs.Load()}
	for i := range s.CtrlOK {
		s.CtrlOK[i], s.CtrlErr[i] = m.CtrlOK[i].Load(), m.CtrlErr[i].Load()
	}
	return s
}
