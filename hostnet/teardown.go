package hostnet

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Teardown removes what Setup recorded in the state file for cfg: the two
// tables, the TAP or macvtap, the bridge (only if nothing else is attached)
// and the sysctls back to their values before setup. With no state file it
// only removes the tables hls_nat and hls_filter (ours by name) and says
// that links and sysctls are left. It is idempotent.
func (h *Host) Teardown(cfg Config) (*Report, error) {
	rep := &Report{}
	path := StatePath(&cfg)
	st, err := loadState(path)
	if err != nil {
		return rep, err
	}
	var errs []error
	if st == nil {
		if cfg.Mode == ModeBridge {
			deleted, err := h.deleteTables()
			if err != nil {
				return rep, err
			}
			for _, t := range deleted {
				rep.add(StatusOK, "nftables", "Removed table ip %s", t)
			}
		}
		rep.add(StatusInfo, "state", "No state in %s: links and sysctls left as they are", path)
		return rep, nil
	}
	c := st.Config
	if c.Mode == ModeBridge && st.Tables {
		deleted, err := h.deleteTables()
		if err != nil {
			return rep, err // nothing removed yet; the state stays
		}
		for _, t := range deleted {
			rep.add(StatusOK, "nftables", "Removed table ip %s", t)
		}
	}
	if st.CreatedTap {
		if err := h.deleteOurLink(c.Tap, isTapKind); err != nil {
			errs = append(errs, err)
		} else {
			rep.add(StatusOK, "tap", "Removed TAP %s", c.Tap)
		}
	}
	if st.CreatedMacvtap {
		if err := h.deleteOurLink(c.Macvtap, func(k string) bool { return k == "macvtap" }); err != nil {
			errs = append(errs, err)
		} else {
			rep.add(StatusOK, "macvtap", "Removed macvtap %s", c.Macvtap)
		}
	}
	bridgeGone, bridgeKept := false, false
	if c.Mode == ModeBridge {
		br, err := h.linkByName(c.Bridge)
		switch {
		case err != nil:
			errs = append(errs, err)
		case br == nil:
			bridgeGone = true
		case br.Type() != "bridge":
			rep.add(StatusWarn, "bridge", "%s is now a %s, not our bridge: left alone", c.Bridge, br.Type())
		case !st.CreatedBridge:
			if st.AddedAddress {
				if err := h.nl.AddrDel(br, addrOf(&c)); ignoreGone(err) != nil {
					errs = append(errs, classify("remove address from "+c.Bridge, err))
				}
			}
			rep.add(StatusInfo, "bridge", "Bridge %s was there before setup: kept", c.Bridge)
		default:
			ports, err := h.attachedPorts(br.Attrs().Index)
			if err != nil {
				errs = append(errs, err)
				break
			}
			if len(ports) > 0 {
				rep.add(StatusWarn, "bridge", "Bridge %s kept: %s still attached (run teardown again once detached)", c.Bridge, strings.Join(ports, ", "))
				bridgeKept = true
				break
			}
			if err := h.nl.LinkDel(br); ignoreGone(err) != nil {
				errs = append(errs, classify("remove bridge "+c.Bridge, err))
				break
			}
			bridgeGone = true
			rep.add(StatusOK, "bridge", "Removed bridge %s", c.Bridge)
		}
	}
	var left []SysctlChange
	for i := len(st.Sysctls) - 1; i >= 0; i-- {
		s := st.Sysctls[i]
		if s.Key == sysctlRouteLocalnet(c.Bridge) {
			if bridgeGone {
				continue // went with the bridge
			}
			if bridgeKept {
				left = append(left, s) // restored when the bridge goes
				continue
			}
		}
		if err := h.writeSysctl(s.Key, s.Previous); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		rep.add(StatusOK, "sysctl", "%s back to %s", sysctlName(s.Key), s.Previous)
	}
	if len(errs) > 0 {
		return rep, errors.Join(errs...)
	}
	if bridgeKept {
		// Remember the bridge (and its sysctl) for the next teardown.
		kept := &State{Config: c, CreatedBridge: true, AddedAddress: st.AddedAddress, Sysctls: left}
		return rep, kept.save(path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("remove state %s: %w", path, err)
	}
	return rep, nil
}

func isTapKind(k string) bool { return k == "tuntap" }

// deleteOurLink deletes name if it exists and has the expected kind.
func (h *Host) deleteOurLink(name string, kindOK func(string) bool) error {
	l, err := h.linkByName(name)
	if err != nil || l == nil {
		return err
	}
	if !kindOK(l.Type()) {
		return conflictf("%s is now a %s, not the device setup made: left alone", name, l.Type())
	}
	if err := h.nl.LinkDel(l); ignoreGone(err) != nil {
		return classify("remove "+name, err)
	}
	return nil
}
