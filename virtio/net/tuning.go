package net

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hlsvmm/hlsvmm/virtio"
)

// Offload is a set of the checksum and segmentation offloads the device
// offers. Each turns on a pair of feature bits, one per direction: HOST_*
// lets the guest send the TAP unfinished work (a partial checksum, a
// 64 KiB frame to segment), GUEST_* lets the TAP hand the guest the same
// (TapOffload turns the accepted GUEST_* bits into TUNSETOFFLOAD flags).
// Offloads cost nothing in hlsvmm itself: the work moves between the
// guest's and the host's network stacks, and frames move in fewer, bigger
// pieces.
type Offload uint8

const (
	// OffloadCsum is CSUM and GUEST_CSUM: checksums are left to whoever
	// delivers the frame. Without it every packet's checksum is computed
	// in software on the sending side, and no other offload is possible.
	OffloadCsum Offload = 1 << iota
	// OffloadTSO4 is HOST_TSO4 and GUEST_TSO4: TCP/IPv4 travels as frames
	// of up to 64 KiB. Without it every MTU-sized packet is its own frame:
	// more descriptors, more kicks and interrupts, more CPU per byte.
	OffloadTSO4
	// OffloadTSO6 is HOST_TSO6 and GUEST_TSO6: the same for TCP/IPv6.
	OffloadTSO6
	// OffloadECN is HOST_ECN and GUEST_ECN: TSO frames may carry the ECN
	// CWR flag. Without it a guest whose TCP uses ECN segments those
	// frames itself.
	OffloadECN
	// OffloadUFO is HOST_UFO and GUEST_UFO: UDP fragmentation offload, big
	// UDP datagrams fragmented by the receiving side. Linux stopped
	// producing UFO in 4.14 and the TAP only accepts the flag, so it is
	// off by default; it matters only to old guests.
	OffloadUFO

	// OffloadNone turns every offload off: checksums and segmentation are
	// done in software before a frame enters a ring.
	OffloadNone Offload = 0
	// DefaultOffload is what the device offered before offloads could be
	// chosen: everything but UFO.
	DefaultOffload = OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadECN
)

// offloads lists each offload with its name (in --offload) and feature
// bits, in canonical order.
var offloads = [...]struct {
	o        Offload
	name     string
	features uint64
}{
	{OffloadCsum, "csum", 1<<FeatureCsum | 1<<FeatureGuestCsum},
	{OffloadTSO4, "tso4", 1<<FeatureHostTSO4 | 1<<FeatureGuestTSO4},
	{OffloadTSO6, "tso6", 1<<FeatureHostTSO6 | 1<<FeatureGuestTSO6},
	{OffloadECN, "ecn", 1<<FeatureHostECN | 1<<FeatureGuestECN},
	{OffloadUFO, "ufo", 1<<FeatureHostUFO | 1<<FeatureGuestUFO},
}

// OffloadFeatures are all the feature bits an Offload can offer.
const OffloadFeatures uint64 = 1<<FeatureCsum | 1<<FeatureGuestCsum |
	1<<FeatureHostTSO4 | 1<<FeatureGuestTSO4 | 1<<FeatureHostTSO6 | 1<<FeatureGuestTSO6 |
	1<<FeatureHostECN | 1<<FeatureGuestECN | 1<<FeatureHostUFO | 1<<FeatureGuestUFO

const offloadWant = "want a comma-separated list of csum, tso4, tso6, ecn, ufo, or none"

// ParseOffload parses a comma-separated list of offload names ("csum",
// "tso4", "tso6", "ecn", "ufo"), or "none", and validates it. The String
// form of any valid Offload parses back to it.
func ParseOffload(s string) (Offload, error) {
	if strings.TrimSpace(s) == "" {
		return 0, errors.New("empty offload list: " + offloadWant)
	}
	var o Offload
	none := false
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "none" {
			none = true
			continue
		}
		found := false
		for _, e := range offloads {
			if e.name == name {
				o |= e.o
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown offload %q: %s", name, offloadWant)
		}
	}
	if none && o != 0 {
		return 0, fmt.Errorf("none together with %s: none stands alone", o)
	}
	return o, o.Validate()
}

// Validate checks the dependencies the virtio specification (§5.1.3.1)
// sets between the offload bits: segmentation needs checksum offload (a
// segmented frame carries a partial checksum) and ECN needs TSO.
func (o Offload) Validate() error {
	if rest := o &^ (OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadECN | OffloadUFO); rest != 0 {
		return fmt.Errorf("unknown offload bits %#x", uint8(rest))
	}
	if o&OffloadCsum == 0 {
		for _, e := range offloads[1:] {
			if o&e.o != 0 {
				return fmt.Errorf("%s needs csum: a segmented frame carries a partial checksum", e.name)
			}
		}
	}
	if o&OffloadECN != 0 && o&(OffloadTSO4|OffloadTSO6) == 0 {
		return errors.New("ecn needs tso4 or tso6: it marks TSO frames")
	}
	return nil
}

// String lists the offloads in canonical order ("csum,tso4,tso6,ecn"), or
// says "none".
func (o Offload) String() string {
	var names []string
	for _, e := range offloads {
		if o&e.o != 0 {
			names = append(names, e.name)
		}
	}
	if rest := o &^ (OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadECN | OffloadUFO); rest != 0 {
		names = append(names, fmt.Sprintf("%#x", uint8(rest)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Features returns the feature bits the offloads offer.
func (o Offload) Features() uint64 {
	var f uint64
	for _, e := range offloads {
		if o&e.o != 0 {
			f |= e.features
		}
	}
	return f
}

// Tuning chooses the features that trade one resource for another on the
// datapath. DefaultTuning is what the device offered before they could be
// chosen. Each is only offered: the guest's driver may still decline it.
type Tuning struct {
	// Offload is the set of checksum and segmentation offloads offered.
	Offload Offload
	// EventIdx offers VIRTIO_F_EVENT_IDX: each side says at which ring
	// index it next wants a notification, so kicks and interrupts are
	// batched. Off, the guest kicks for (nearly) every frame and the
	// device interrupts for every used batch: more exits and interrupts,
	// sometimes lower latency.
	EventIdx bool
	// IndirectDesc offers VIRTIO_F_INDIRECT_DESC: a frame's buffers are
	// described by a table outside the ring, so one ring slot carries a
	// whole scatter-gather frame and more frames fit in flight. Off, a
	// frame of n buffers takes n slots; the table costs the device one
	// more guest-memory read per frame.
	IndirectDesc bool
	// MrgRxbuf offers VIRTIO_NET_F_MRG_RXBUF: a received frame may span
	// several small (page-sized) guest buffers. Off, a guest that accepts
	// GUEST_TSO posts a 64 KiB buffer chain for every receive slot
	// whatever the frame size: much more guest memory pinned in the ring
	// and worse cache use, but no merging work.
	MrgRxbuf bool
}

// DefaultTuning offers every offload but UFO and all three ring features.
func DefaultTuning() Tuning {
	return Tuning{Offload: DefaultOffload, EventIdx: true, IndirectDesc: true, MrgRxbuf: true}
}

// Validate checks the offload set.
func (t Tuning) Validate() error {
	if err := t.Offload.Validate(); err != nil {
		return fmt.Errorf("offload %s: %w", t.Offload, err)
	}
	return nil
}

// Features returns offered, a device's feature offer, under t: its offload
// bits replaced by t.Offload's (the device model serves any offload: the
// virtio-net header passes through to the TAP), and EVENT_IDX,
// INDIRECT_DESC and MRG_RXBUF removed where t turns them off. It never
// adds a ring feature, so a backend's limits still apply.
func (t Tuning) Features(offered uint64) uint64 {
	f := offered&^OffloadFeatures | t.Offload.Features()
	if !t.EventIdx {
		f &^= 1 << virtio.FeatureEventIdx
	}
	if !t.IndirectDesc {
		f &^= 1 << virtio.FeatureIndirectDesc
	}
	if !t.MrgRxbuf {
		f &^= 1 << FeatureMrgRxbuf
	}
	return f
}
