package hostnet

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

func TestMacvtapSetupOpenTeardown(t *testing.T) {
	h, nl, cfg := hostOnly(t)
	addLink(t, nl, "lan0")
	l, _ := nl.LinkByName("lan0")
	if err := nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	cfg.Mode, cfg.Link, cfg.Macvtap, cfg.MacvtapMode = ModeMacvtap, "lan0", "hlsmv0", "bridge"
	cfg.UID, cfg.GID = 1000, 1000
	before := snapshot(t, h)
	rep, err := h.Setup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range rep.Lines {
		t.Log(l)
	}
	fi, err := os.Stat(rep.Device)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("%s owned by %d:%d, want 1000:1000", rep.Device, st.Uid, st.Gid)
	}
	mv, _ := nl.LinkByName("hlsmv0")
	if mv.Attrs().RawFlags&0x200 == 0 {
		t.Error("allmulticast off")
	}
	tap, err := OpenMacvtap(mv.Attrs().Index, &TapOptions{Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := tap.SetOffload(OffloadCsum | OffloadTSO4); err != nil {
		t.Error(err)
	}
	tap.Close()
	if rep, err := h.Setup(cfg); err != nil || rep.Changed {
		t.Errorf("second setup: changed=%v err=%v", rep.Changed, err)
	}
	if _, err := h.Teardown(cfg); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, h); after != before {
		t.Errorf("teardown left changes:\n%s\nvs\n%s", before, after)
	}
	if _, err := os.Stat(rep.Device); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", rep.Device, err)
	}
}

func TestMacvtapNeedsExistingLink(t *testing.T) {
	h, _, cfg := hostOnly(t)
	cfg.Mode, cfg.Link = ModeMacvtap, "nosuch0"
	expectRefused(t, h, cfg, ErrInvalidConfig)
}
