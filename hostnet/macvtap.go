package hostnet

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vishvananda/netlink"
)

func macvtapMode(s string) (netlink.MacvlanMode, error) {
	switch s {
	case "bridge", "":
		return netlink.MACVLAN_MODE_BRIDGE, nil
	case "private":
		return netlink.MACVLAN_MODE_PRIVATE, nil
	case "vepa":
		return netlink.MACVLAN_MODE_VEPA, nil
	}
	return 0, invalidf("macvtap mode %q: want bridge, private or vepa", s)
}

// MacvtapLimitation is printed with every macvtap setup.
const MacvtapLimitation = "macvtap limitation: the host cannot reach the guest through its own NIC (macvlan); use another machine on the LAN, or bridge mode"

func (r *setupRun) macvtapMode() error {
	h, cfg := r.h, &r.cfg
	mode, _ := macvtapMode(cfg.MacvtapMode)
	parent, err := h.linkByName(cfg.Link)
	if err != nil {
		return err
	}
	if parent == nil {
		return invalidf("--link %s: no such interface", cfg.Link)
	}
	mv, err := h.linkByName(cfg.Macvtap)
	if err != nil {
		return err
	}
	if mv != nil {
		m, ok := mv.(*netlink.Macvtap)
		if !ok {
			return conflictf("%s exists and is a %s, not a macvtap", cfg.Macvtap, describeKind(mv))
		}
		if m.ParentIndex != parent.Attrs().Index {
			return conflictf("macvtap %s is on %s, not %s", cfg.Macvtap, h.linkName(m.ParentIndex), cfg.Link)
		}
		if m.Mode != mode {
			return conflictf("macvtap %s exists in another mode; run `hlsvmm network teardown` first", cfg.Macvtap)
		}
		r.rep.add(StatusInfo, "macvtap", "macvtap %s on %s exists", cfg.Macvtap, cfg.Link)
	} else {
		la := netlink.NewLinkAttrs()
		la.Name = cfg.Macvtap
		la.ParentIndex = parent.Attrs().Index
		nm := &netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: mode}}
		if err := h.nl.LinkAdd(nm); err != nil {
			return classify(fmt.Sprintf("create macvtap %s on %s", cfg.Macvtap, cfg.Link), err)
		}
		r.undo.push("create macvtap", func() error { return r.deleteLink(cfg.Macvtap) })
		r.st.CreatedMacvtap = true
		r.changed = true
		if err := r.save(); err != nil {
			return err
		}
		if mv, err = h.nl.LinkByName(cfg.Macvtap); err != nil {
			return classify("look up macvtap "+cfg.Macvtap, err)
		}
		r.rep.add(StatusOK, "macvtap", "Created macvtap %s on %s (mode %s)", cfg.Macvtap, cfg.Link, cfg.MacvtapMode)
	}
	if mv.Attrs().RawFlags&0x200 == 0 { // IFF_ALLMULTI
		if err := h.nl.LinkSetAllmulticastOn(mv); err != nil {
			return classify("set allmulticast on "+cfg.Macvtap, err)
		}
		r.changed = true
	}
	if err := h.nl.LinkSetUp(mv); err != nil {
		return classify("set "+cfg.Macvtap+" up", err)
	}
	dev := MacvtapDevice(mv.Attrs().Index)
	if err := waitDevice(dev); err != nil {
		return err
	}
	if cfg.UID >= 0 {
		if err := os.Chown(dev, cfg.UID, cfg.GID); err != nil {
			return classify("give "+dev+" to "+owner(cfg.UID, cfg.GID), err)
		}
		if err := os.Chmod(dev, 0o600); err != nil {
			return classify("chmod "+dev, err)
		}
	}
	r.st.MacvtapDevice = dev
	if err := r.save(); err != nil {
		return err
	}
	r.rep.add(StatusOK, "macvtap-device", "%s ready (owner %s), allmulticast on", dev, owner(cfg.UID, cfg.GID))
	r.rep.add(StatusWarn, "macvtap-limit", "%s", MacvtapLimitation)
	return nil
}

// waitDevice waits for devtmpfs/udev to create a macvtap's /dev/tapN.
func waitDevice(path string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return fmt.Errorf("macvtap device %s did not appear (is /dev a devtmpfs?): %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
