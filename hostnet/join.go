package hostnet

import (
	"fmt"
	"net"
)

// LoadState returns what setup recorded for cfg (its state file), or nil
// when the network described by cfg was not set up by hlsvmm.
func LoadState(cfg Config) (*State, error) { return loadState(StatePath(&cfg)) }

// AttachTap puts the existing TAP tap on bridge and sets it up: a second VM
// joining a network another setup made. A TAP opened (and so created) by
// OpenTap goes away with its last fd, and leaves the bridge with it.
func (h *Host) AttachTap(tap, bridge string) error {
	br, err := h.linkByName(bridge)
	if err != nil {
		return err
	}
	if br == nil || br.Type() != "bridge" {
		return invalidf("bridge %s does not exist", bridge)
	}
	l, err := h.linkByName(tap)
	if err != nil {
		return err
	}
	if l == nil || !isTap(l) {
		return invalidf("%s is not a TAP", tap)
	}
	if m := l.Attrs().MasterIndex; m != 0 && m != br.Attrs().Index {
		return conflictf("TAP %s is attached to %s, not %s", tap, h.linkName(m), bridge)
	}
	if l.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.nl.LinkSetMasterByIndex(l, br.Attrs().Index); err != nil {
			return classify(fmt.Sprintf("attach %s to %s", tap, bridge), err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(l); err != nil {
			return classify("set "+tap+" up", err)
		}
	}
	return nil
}
