// Package virtio holds what every virtio device shares: device and feature
// identifiers from the virtio 1.x specification and the Device interface
// between a device model (virtio/net, later blk, 9p, rng) and the transport
// that exposes it to the guest (virtio/pci).
//
// The transport owns feature negotiation, queue setup, notifications and
// interrupts. A device sees only the outcome: the features the driver
// accepted and, per queue, where the rings are plus two eventfds — Kick,
// signalled (by KVM ioeventfd) when the driver notifies the queue, and Call,
// which interrupts the driver (through KVM irqfd) when signalled. Because the
// device only ever gets eventfds, a device may hand them to the kernel
// (vhost-net) or serve them in userspace without the transport knowing.
package virtio

import (
	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// DeviceID is a virtio device type (virtio 1.2 §5).
type DeviceID uint16

const (
	DeviceNet     DeviceID = 1
	DeviceBlock   DeviceID = 2
	DeviceConsole DeviceID = 3
	DeviceEntropy DeviceID = 4
	Device9P      DeviceID = 9
)

// Reserved feature bits shared by all devices (virtio 1.2 §6), as bit numbers.
const (
	FeatureIndirectDesc   = 28 // VIRTIO_F_INDIRECT_DESC / VIRTIO_RING_F_INDIRECT_DESC
	FeatureEventIdx       = 29 // VIRTIO_F_EVENT_IDX / VIRTIO_RING_F_EVENT_IDX
	FeatureVersion1       = 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform = 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureRingPacked     = 34 // VIRTIO_F_RING_PACKED
)

// Device status bits (virtio 1.2 §2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 64
	StatusFailed           = 128
)

// Device is a virtio device model, independent of the transport.
type Device interface {
	// ID is the virtio device type.
	ID() DeviceID
	// Features is the set of feature bits the device offers, device-specific
	// and ring features included (VERSION_1 too: every device here is modern).
	Features() uint64
	// QueueMaxSizes has one entry per virtqueue: the largest size the device
	// accepts for it (a power of two). Its length is the number of queues.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the device-specific configuration space at
	// offset. Offsets past the end of the space read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig stores a driver write to the configuration space. Most
	// fields are read-only; writes to them are ignored.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device once the driver set DRIVER_OK. The device
	// owns nothing in a; it must stop using the eventfds and memory on Reset.
	Activate(a Activation) error
	// Reset stops all device work and returns the device to its initial
	// state, ready for another Activate (the driver wrote status 0).
	Reset()
}

// Activation is what a device gets when the driver is ready.
type Activation struct {
	// Features are the bits the driver accepted: a subset of Features().
	Features uint64
	// Memory is guest RAM; every address below is guest-physical.
	Memory *memory.Memory
	// Queues are the queues the driver enabled, in index order.
	Queues []QueueConfig
	// Broken marks the device as needing a reset (DEVICE_NEEDS_RESET, then a
	// configuration-change interrupt). A device calls it when the guest hands
	// it something it cannot process (a malformed descriptor chain), and
	// stops processing the affected queue.
	Broken func(err error)
}

// QueueConfig describes one split virtqueue as the driver configured it.
type QueueConfig struct {
	Index  uint16 // queue number
	Size   uint16 // number of descriptors, a power of two
	Desc   uint64 // guest-physical address of the descriptor table
	Driver uint64 // guest-physical address of the driver (available) ring
	Device uint64 // guest-physical address of the device (used) ring
	// Kick is signalled when the driver notifies this queue.
	Kick *eventfd.EventFD
	// Call interrupts the driver on this queue's MSI-X vector when signalled.
	Call *eventfd.EventFD
}

// HasFeature reports whether bit is set in features.
func HasFeature(features uint64, bit uint) bool { return features&(1<<bit) != 0 }
