package hostnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// undoStack holds the inverse of every change made by the current call,
// run in reverse order if a later step fails: a failed setup leaves the
// host as it found it.
type undoStack []undoStep

type undoStep struct {
	what string
	do   func() error
}

func (u *undoStack) push(what string, do func() error) { *u = append(*u, undoStep{what, do}) }

func (u undoStack) run() error {
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i].do(); err != nil {
			errs = append(errs, fmt.Errorf("roll back %s: %w", u[i].what, err))
		} else {
			slog.Debug("rolled back", "step", u[i].what)
		}
	}
	return errors.Join(errs...)
}

// setupRun is one call of Setup.
type setupRun struct {
	h       *Host
	cfg     Config
	path    string
	prev    *State // state before this call (nil: none)
	st      *State
	undo    undoStack
	rep     *Report
	changed bool
}

// Setup makes the host network described by cfg, in the host's namespace,
// and records what it did for Teardown. It is idempotent: run again, it
// changes nothing (Report.Changed false); after a crash it completes the
// setup. On error everything this call changed is undone. The returned
// report lists the steps even on error.
func (h *Host) Setup(cfg Config) (*SetupReport, error) {
	if err := cfg.Validate(); err != nil {
		return &SetupReport{}, err
	}
	r := &setupRun{h: h, cfg: cfg, path: StatePath(&cfg), rep: &Report{}}
	prev, err := loadState(r.path)
	if err != nil {
		return &SetupReport{}, err
	}
	r.prev = prev
	r.st = &State{Config: cfg}
	if prev != nil {
		if prev.Config.Mode != cfg.Mode {
			return &SetupReport{}, conflictf("%s was set up in %s mode; run `hlsvmm network teardown` first", cfg.Name(), prev.Config.Mode)
		}
		// Keep what an earlier setup created and the values it found.
		*r.st = *prev
		r.st.Config = cfg
	}
	var runErr error
	switch cfg.Mode {
	case ModeBridge:
		runErr = r.bridgeMode()
	case ModeMacvtap:
		runErr = r.macvtapMode()
	}
	out := &SetupReport{Report: *r.rep, Changed: r.changed, StatePath: r.path}
	if r.cfg.Mode == ModeMacvtap && runErr == nil {
		out.Device = r.st.MacvtapDevice
	}
	if runErr != nil {
		errs := []error{runErr}
		if err := r.undo.run(); err != nil {
			errs = append(errs, err)
		}
		if err := r.restoreStateFile(); err != nil {
			errs = append(errs, err)
		}
		out.Changed = false
		return out, errors.Join(errs...)
	}
	return out, nil
}

// SetupReport is what Setup did.
type SetupReport struct {
	Report
	// Changed is false when the host already matched the configuration.
	Changed   bool   `json:"changed"`
	StatePath string `json:"state_path"`
	// Device is the macvtap's character device (macvtap mode).
	Device string `json:"device,omitempty"`
}

func (r *setupRun) save() error { return r.st.save(r.path) }

func (r *setupRun) restoreStateFile() error {
	if r.prev != nil {
		return r.prev.save(r.path)
	}
	if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state %s: %w", r.path, err)
	}
	return nil
}

func (r *setupRun) bridgeMode() error {
	h, cfg := r.h, &r.cfg
	gw := netip.PrefixFrom(cfg.Gateway, cfg.Subnet.Bits())

	// Preflight: everything that can be refused is refused before the first
	// change.
	if err := h.nftAvailable(); err != nil {
		return err
	}
	br, err := h.linkByName(cfg.Bridge)
	if err != nil {
		return err
	}
	brIndex := 0
	if br != nil {
		if br.Type() != "bridge" {
			return conflictf("%s exists and is a %s, not a bridge; choose another --bridge", cfg.Bridge, br.Type())
		}
		brIndex = br.Attrs().Index
		addrs, err := h.ipv4Addrs(br)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a != gw {
				return conflictf("bridge %s has address %v, not %v; choose another --bridge or --gateway", cfg.Bridge, a, gw)
			}
		}
	}
	tap, err := h.linkByName(cfg.Tap)
	if err != nil {
		return err
	}
	if tap != nil {
		if !isTap(tap) {
			return conflictf("%s exists and is a %s, not a TAP; choose another --tap", cfg.Tap, describeKind(tap))
		}
		if m := tap.Attrs().MasterIndex; m != 0 && m != brIndex {
			return conflictf("TAP %s is attached to %s, not %s", cfg.Tap, h.linkName(m), cfg.Bridge)
		}
	}
	if err := h.subnetUsedElsewhere(cfg.Subnet, brIndex); err != nil {
		return err
	}

	// Bridge, address, up.
	if br == nil {
		la := netlink.NewLinkAttrs()
		la.Name = cfg.Bridge
		nb := &netlink.Bridge{LinkAttrs: la}
		if err := h.nl.LinkAdd(nb); err != nil {
			return classify("create bridge "+cfg.Bridge, err)
		}
		r.undo.push("create bridge "+cfg.Bridge, func() error { return h.nl.LinkDel(nb) })
		r.st.CreatedBridge = true
		r.changed = true
		if err := r.save(); err != nil {
			return err
		}
		if br, err = h.nl.LinkByName(cfg.Bridge); err != nil {
			return classify("look up bridge "+cfg.Bridge, err)
		}
		r.rep.add(StatusOK, "bridge", "Created bridge %s", cfg.Bridge)
	} else {
		r.rep.add(StatusInfo, "bridge", "Bridge %s exists", cfg.Bridge)
	}
	brIndex = br.Attrs().Index
	addrs, err := h.ipv4Addrs(br)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		addr := &netlink.Addr{IPNet: toIPNet(gw)}
		if err := h.nl.AddrAdd(br, addr); err != nil {
			return classify(fmt.Sprintf("add %v to %s", gw, cfg.Bridge), err)
		}
		r.undo.push("add address", func() error { return ignoreGone(h.nl.AddrDel(br, addr)) })
		r.st.AddedAddress = true
		r.changed = true
		if err := r.save(); err != nil {
			return err
		}
		r.rep.add(StatusOK, "address", "Gateway %v on %s", gw, cfg.Bridge)
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(br); err != nil {
			return classify("set "+cfg.Bridge+" up", err)
		}
		r.undo.push("set bridge up", func() error { return ignoreGone(h.nl.LinkSetDown(br)) })
		r.changed = true
	}

	// TAP: multi_queue, vnet_hdr, owned by the user, on the bridge, up.
	if tap == nil {
		err := h.Do(func() error { return createPersistentTap(cfg.Tap, cfg.UID, cfg.GID) })
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("create TAP %s: %w (%w)", cfg.Tap, ErrTapBusy, err)
		}
		if err != nil {
			return classify("create TAP "+cfg.Tap, err)
		}
		r.undo.push("create TAP "+cfg.Tap, func() error { return r.deleteLink(cfg.Tap) })
		r.st.CreatedTap = true
		r.changed = true
		if err := r.save(); err != nil {
			return err
		}
		if tap, err = h.nl.LinkByName(cfg.Tap); err != nil {
			return classify("look up TAP "+cfg.Tap, err)
		}
		r.rep.add(StatusOK, "tap", "Created TAP %s (multi_queue, vnet_hdr, owner %s)", cfg.Tap, owner(cfg.UID, cfg.GID))
	} else {
		t := tap.(*netlink.Tuntap)
		r.rep.add(StatusInfo, "tap", "TAP %s exists", cfg.Tap)
		if cfg.UID >= 0 && int(t.Owner) != cfg.UID && !(t.Owner == ^uint32(0) && cfg.UID == 0) {
			r.rep.add(StatusWarn, "tap-owner", "TAP %s belongs to uid %d, not %d (teardown and setup again to change)", cfg.Tap, int32(t.Owner), cfg.UID)
		}
		if t.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
			r.rep.add(StatusWarn, "tap-mq", "TAP %s is not multi_queue: one queue pair only", cfg.Tap)
		}
	}
	if tap.Attrs().MasterIndex != brIndex {
		if err := h.nl.LinkSetMasterByIndex(tap, brIndex); err != nil {
			return classify(fmt.Sprintf("attach %s to %s", cfg.Tap, cfg.Bridge), err)
		}
		r.undo.push("attach TAP", func() error { return ignoreGone(h.nl.LinkSetNoMaster(tap)) })
		r.changed = true
		r.rep.add(StatusOK, "tap-master", "TAP %s attached to %s", cfg.Tap, cfg.Bridge)
	}
	if tap.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(tap); err != nil {
			return classify("set "+cfg.Tap+" up", err)
		}
		r.undo.push("set TAP up", func() error { return ignoreGone(h.nl.LinkSetDown(tap)) })
		r.changed = true
	}

	// Sysctls: forwarding, and 127.0.0.0/8 routable on the bridge only.
	if err := r.setSysctl(sysctlIPForward, "1"); err != nil {
		return err
	}
	if err := r.setSysctl(sysctlRouteLocalnet(cfg.Bridge), "1"); err != nil {
		return err
	}

	// nftables, last: one atomic batch, nothing to undo if it fails.
	if err := h.fail("nftables"); err != nil {
		return err
	}
	changed, err := h.applyRuleset(buildRuleset(cfg))
	if err != nil {
		return err
	}
	r.st.Tables = true
	if err := r.save(); err != nil {
		return err
	}
	if changed {
		r.changed = true
		n, err := h.flushConntrack(cfg)
		if err != nil {
			// The rules are in place; stale entries only delay new ones.
			r.rep.add(StatusWarn, "conntrack", "Could not flush conntrack entries for %v: %v", cfg.VM, err)
		} else {
			r.rep.add(StatusOK, "nftables", "nftables tables %s and %s replaced (%d stale conntrack entries for %v flushed)", NATTable, FilterTable, n, cfg.VM)
		}
	} else {
		r.rep.add(StatusInfo, "nftables", "nftables tables %s and %s already up to date", NATTable, FilterTable)
	}
	for _, f := range cfg.Forwards {
		r.rep.add(StatusInfo, "forward", "127.0.0.1:%d and host:%d -> %v:%d", f.HostPort, f.HostPort, cfg.VM, f.GuestPort)
	}
	// Warnings about what is not ours but would spoil it.
	r.rep.Lines = append(r.rep.Lines, h.checkBridgeNF()...)
	r.rep.Lines = append(r.rep.Lines, h.checkForeignDrops()...)
	return nil
}

// setSysctl sets key to value, recording the value before (unless an
// earlier setup already recorded it: that one is the original).
func (r *setupRun) setSysctl(key, value string) error {
	old, err := r.h.readSysctl(key)
	if err != nil {
		return err
	}
	if old == value {
		return nil
	}
	if err := r.h.writeSysctl(key, value); err != nil {
		return err
	}
	r.undo.push("set "+sysctlName(key), func() error { return r.h.writeSysctl(key, old) })
	r.changed = true
	r.rep.add(StatusOK, "sysctl", "%s = %s (was %s)", sysctlName(key), value, old)
	if _, ok := r.st.sysctl(key); !ok {
		r.st.Sysctls = append(r.st.Sysctls, SysctlChange{Key: key, Previous: old, Value: value})
	}
	return r.save()
}

func (r *setupRun) deleteLink(name string) error {
	l, err := r.h.linkByName(name)
	if err != nil || l == nil {
		return err
	}
	return r.h.nl.LinkDel(l)
}

// flushConntrack deletes conntrack entries to or NATed to the VM, so that
// connections set up under old rules do not keep their old bindings.
func (h *Host) flushConntrack(cfg *Config) (uint, error) {
	ip := net.IP(cfg.VM.AsSlice())
	orig := &netlink.ConntrackFilter{}
	if err := orig.AddIP(netlink.ConntrackOrigDstIP, ip); err != nil {
		return 0, err
	}
	reply := &netlink.ConntrackFilter{}
	if err := reply.AddIP(netlink.ConntrackReplySrcIP, ip); err != nil {
		return 0, err
	}
	n, err := h.nl.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, orig, reply)
	if err != nil {
		return n, classify("flush conntrack entries for "+cfg.VM.String(), err)
	}
	return n, nil
}

// nftAvailable fails early, with ErrNFTablesMissing or ErrPermission,
// when nftables cannot be used.
func (h *Host) nftAvailable() error {
	c, err := h.nft()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if _, err := c.ListTables(); err != nil {
		return classifyNFT("list nftables tables", err)
	}
	return nil
}

func ignoreGone(err error) error {
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EADDRNOTAVAIL) {
		return nil
	}
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	return err
}

func describeKind(l netlink.Link) string {
	if t, ok := l.(*netlink.Tuntap); ok && t.Mode == netlink.TUNTAP_MODE_TUN {
		return "TUN"
	}
	return l.Type()
}

func owner(uid, gid int) string {
	if uid < 0 {
		return "root only"
	}
	return fmt.Sprintf("%d:%d", uid, gid)
}
