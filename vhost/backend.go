package vhost

import (
	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
)

// NetBackend is the vhost-net datapath for one virtio-net queue pair: it
// implements virtio/net's Backend by handing the pair's rings and eventfds
// to a Net and attaching one TAP queue.
type NetBackend struct {
	net *Net
	tap int
}

var _ vnet.Backend = (*NetBackend)(nil)

// NewNetBackend takes ownership of n (Close closes it) and borrows tapFd,
// a TAP queue opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR and a vnet header
// size of 12, for as long as the backend runs.
func NewNetBackend(n *Net, tapFd int) *NetBackend {
	return &NetBackend{net: n, tap: tapFd}
}

// Name says which datapath this is.
func (b *NetBackend) Name() string { return "vhost-net" }

// Features is what vhost-net offered without vhost's own bits
// (VHOST_F_LOG_ALL, VHOST_NET_F_VIRTIO_NET_HDR, which is also ANY_LAYOUT, a
// legacy bit) and without what hlsvmm never uses with vhost (ACCESS_PLATFORM,
// RING_RESET). Offload bits are not among them: the TAP handles those.
func (b *NetBackend) Features() uint64 { return b.net.Features() &^ internalFeatures }

// Start hands the pair to the kernel. The rings start at index 0: Start
// follows a driver reset or the first DRIVER_OK.
func (b *NetBackend) Start(p vnet.PairConfig) error {
	return b.net.Start(Config{Features: p.Features, Memory: p.Memory, RX: p.RX, TX: p.TX, Tap: b.tap})
}

// Stop detaches the TAP and the eventfds; the kernel touches neither rings
// nor eventfds once it returns.
func (b *NetBackend) Stop() error { return b.net.Stop() }

// Close closes the vhost-net descriptor (not the TAP, not the eventfds).
func (b *NetBackend) Close() error { return b.net.Close() }
