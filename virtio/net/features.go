package net

import (
	"github.com/hlsvmm/hlsvmm/virtio"
	"golang.org/x/sys/unix"
)

// virtio-net feature bits (virtio 1.2 §5.1.3), as bit numbers.
const (
	FeatureCsum      = 0  // VIRTIO_NET_F_CSUM: the driver may send partial checksums
	FeatureGuestCsum = 1  // VIRTIO_NET_F_GUEST_CSUM: the driver accepts partial checksums
	FeatureMTU       = 3  // VIRTIO_NET_F_MTU
	FeatureMAC       = 5  // VIRTIO_NET_F_MAC
	FeatureGuestTSO4 = 7  // VIRTIO_NET_F_GUEST_TSO4
	FeatureGuestTSO6 = 8  // VIRTIO_NET_F_GUEST_TSO6
	FeatureGuestECN  = 9  // VIRTIO_NET_F_GUEST_ECN
	FeatureGuestUFO  = 10 // VIRTIO_NET_F_GUEST_UFO
	FeatureHostTSO4  = 11 // VIRTIO_NET_F_HOST_TSO4
	FeatureHostTSO6  = 12 // VIRTIO_NET_F_HOST_TSO6
	FeatureHostECN   = 13 // VIRTIO_NET_F_HOST_ECN
	FeatureHostUFO   = 14 // VIRTIO_NET_F_HOST_UFO
	FeatureMrgRxbuf  = 15 // VIRTIO_NET_F_MRG_RXBUF
	FeatureStatus    = 16 // VIRTIO_NET_F_STATUS
	FeatureCtrlVQ    = 17 // VIRTIO_NET_F_CTRL_VQ: a control queue after the data queues
	FeatureCtrlRX    = 18 // VIRTIO_NET_F_CTRL_RX: RX-mode and MAC-filter commands
	FeatureMQ        = 22 // VIRTIO_NET_F_MQ: several queue pairs, VQ_PAIRS_SET
)

// ControlFeatures are offered by a device with more than one queue pair:
// the control queue, served by hlsvmm itself (ctrl.go), with multiqueue and
// the RX-mode commands Linux sends whenever it has a control queue. One
// pair keeps two queues and no control queue, as before multiqueue.
const ControlFeatures uint64 = 1<<FeatureCtrlVQ | 1<<FeatureCtrlRX | 1<<FeatureMQ

// DeviceFeatures are offered by the device model itself whatever the
// backend: checksum/segmentation offloads travel in the virtio-net header
// between the guest and the TAP (TUNSETOFFLOAD), and the configuration
// fields are the device's.
const DeviceFeatures uint64 = 1<<FeatureCsum | 1<<FeatureGuestCsum | 1<<FeatureGuestTSO4 |
	1<<FeatureGuestTSO6 | 1<<FeatureGuestECN | 1<<FeatureHostTSO4 | 1<<FeatureHostTSO6 |
	1<<FeatureHostECN | 1<<FeatureMAC | 1<<FeatureStatus | 1<<FeatureMTU

// RingFeatures change how the rings and buffers are used, so the backend
// serving them must support them: offered only if every backend does.
// VERSION_1 is mandatory.
const RingFeatures uint64 = 1<<FeatureMrgRxbuf | 1<<virtio.FeatureEventIdx |
	1<<virtio.FeatureIndirectDesc | 1<<virtio.FeatureVersion1

// TapOffload returns the TUN_F_* flags for TUNSETOFFLOAD from the features
// the driver accepted: what the TAP may hand the guest. Segmentation
// offloads (TSO, UFO) need checksum offload (a GSO frame carries a partial
// checksum), and ECN needs TSO.
func TapOffload(acked uint64) uint {
	has := func(b uint) bool { return virtio.HasFeature(acked, b) }
	if !has(FeatureGuestCsum) {
		return 0
	}
	flags := uint(unix.TUN_F_CSUM)
	if has(FeatureGuestTSO4) {
		flags |= unix.TUN_F_TSO4
	}
	if has(FeatureGuestTSO6) {
		flags |= unix.TUN_F_TSO6
	}
	if has(FeatureGuestECN) && flags&(unix.TUN_F_TSO4|unix.TUN_F_TSO6) != 0 {
		flags |= unix.TUN_F_TSO_ECN
	}
	if has(FeatureGuestUFO) {
		flags |= unix.TUN_F_UFO
	}
	return flags
}
