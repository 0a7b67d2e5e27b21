package net

import (
	"encoding/binary"
	"fmt"
)

// Layout of struct virtio_net_config (virtio 1.2 §5.1.4) up to mtu; the
// fields after it (speed, duplex, RSS) belong to features not offered.
const (
	configMAC       = 0  // mac[6]
	configStatus    = 6  // le16 status
	configMaxPairs  = 8  // le16 max_virtqueue_pairs
	configMTU       = 10 // le16 mtu
	configSpaceSize = 12
)

// StatusLinkUp is VIRTIO_NET_S_LINK_UP in the status field.
const StatusLinkUp = 1

// Defaults.
const (
	DefaultMTU       = 1500
	DefaultQueueSize = 256
	minMTU           = 68 // IPv4 minimum
)

// DefaultMAC is 02:00:00:01:77:01, locally administered.
func DefaultMAC() [6]byte { return [6]byte{0x02, 0x00, 0x00, 0x01, 0x77, 0x01} }

// configSpace builds the read-only configuration space.
func configSpace(mac [6]byte, mtu uint16, pairs int) [configSpaceSize]byte {
	var s [configSpaceSize]byte
	copy(s[configMAC:], mac[:])
	binary.LittleEndian.PutUint16(s[configStatus:], StatusLinkUp)
	binary.LittleEndian.PutUint16(s[configMaxPairs:], uint16(pairs))
	binary.LittleEndian.PutUint16(s[configMTU:], mtu)
	return s
}

// ParseMAC parses "aa:bb:cc:dd:ee:ff" into a unicast MAC address.
func ParseMAC(s string) ([6]byte, error) {
	var m [6]byte
	if _, err := fmt.Sscanf(s, "%02x:%02x:%02x:%02x:%02x:%02x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]); err != nil || len(s) != 17 {
		return m, fmt.Errorf("MAC address %q: want six hex bytes like 02:00:00:01:77:01", s)
	}
	if m[0]&1 != 0 {
		return m, fmt.Errorf("MAC address %q is multicast: the first byte must be even", s)
	}
	return m, nil
}
