package hostnet

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testbed is issue 5's scene, every part in a namespace of its own: the
// "host" (where setup runs), a "vm" behind the bridge through a veth that
// stands in for the TAP, an "external" client's network and an "internet".
type testbed struct {
	host, vm, ext, inet netns.NsHandle
	hnl, vmnl           *netlink.Handle
	h                   *Host
	cfg                 Config
}

func newTestbed(t *testing.T) *testbed {
	requireRoot(t)
	tb := &testbed{}
	tb.host, tb.hnl = newNS(t)
	var extnl, inetnl *netlink.Handle
	tb.vm, tb.vmnl = newNS(t)
	tb.ext, extnl = newNS(t)
	tb.inet, inetnl = newNS(t)

	veth(t, tb.hnl, "ext0", "eth0", tb.ext)
	mustAddr(t, tb.hnl, "ext0", "192.0.2.1/24")
	mustAddr(t, extnl, "eth0", "192.0.2.2/24")
	mustDefaultRoute(t, extnl, "192.0.2.1")
	veth(t, tb.hnl, "inet0", "eth0", tb.inet)
	mustAddr(t, tb.hnl, "inet0", "198.51.100.1/24")
	mustAddr(t, inetnl, "eth0", "198.51.100.2/24")

	h, err := OpenHostAt(tb.host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	tb.h = h
	tb.cfg = DefaultConfig()
	tb.cfg.StateDir = t.TempDir()
	tb.cfg.UID, tb.cfg.GID = 1000, 1000
	return tb
}

// plugVM connects the "vm" namespace to the bridge (after setup).
func (tb *testbed) plugVM(t *testing.T) {
	t.Helper()
	veth(t, tb.hnl, "vmport0", "eth0", tb.vm)
	port, err := tb.hnl.LinkByName("vmport0")
	if err != nil {
		t.Fatal(err)
	}
	br, err := tb.hnl.LinkByName(tb.cfg.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.hnl.LinkSetMaster(port, br); err != nil {
		t.Fatal(err)
	}
	if err := tb.hnl.LinkSetUp(port); err != nil {
		t.Fatal(err)
	}
	mustAddr(t, tb.vmnl, "eth0", "10.177.0.10/24")
	mustDefaultRoute(t, tb.vmnl, "10.177.0.1")
}

func (tb *testbed) unplugVM(t *testing.T) {
	t.Helper()
	l, err := tb.hnl.LinkByName("vmport0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.hnl.LinkDel(l); err != nil {
		t.Fatal(err)
	}
}

func TestSetupForwardsTeardown(t *testing.T) {
	tb := newTestbed(t)
	// Things that are not ours and must survive: a foreign table and a
	// foreign bridge with a port.
	addForeignTable(t, tb.h, nftables.ChainPolicyAccept)
	bla := netlink.NewLinkAttrs()
	bla.Name = "fbr0"
	fbr := &netlink.Bridge{LinkAttrs: bla}
	if err := tb.hnl.LinkAdd(fbr); err != nil {
		t.Fatal(err)
	}
	fla := netlink.NewLinkAttrs()
	fla.Name = "fport0"
	fport := &netlink.Veth{LinkAttrs: fla, PeerName: "fpeer0"}
	if err := tb.hnl.LinkAdd(fport); err != nil {
		t.Fatal(err)
	}
	if err := tb.hnl.LinkSetMaster(fport, fbr); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, tb.h)

	rep, err := tb.h.Setup(tb.cfg)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	if !rep.Changed {
		t.Error("first setup reports no change")
	}
	for _, l := range rep.Lines {
		t.Log(l)
	}
	afterSetup := snapshot(t, tb.h, sysctlRouteLocalnet("hlsbr0"))
	tap, err := tb.hnl.LinkByName("hlstap0")
	if err != nil {
		t.Fatal(err)
	}
	tt := tap.(*netlink.Tuntap)
	if tt.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 || tt.Flags&netlink.TUNTAP_VNET_HDR == 0 || tt.Owner != 1000 {
		t.Errorf("TAP flags %#x owner %d: want multi_queue, vnet_hdr, owner 1000", tt.Flags, tt.Owner)
	}

	tb.plugVM(t)
	for _, p := range []int{17080, 22, 9100, 9113} {
		serve(t, tb.vm, p, "vm:"+strconv.Itoa(p))
	}
	serve(t, tb.inet, 17080, "internet")
	serveHealth(t, tb.vm, 18080)

	cases := []struct {
		name   string
		from   netns.NsHandle
		addr   string
		want   string
		hidden bool
	}{
		{"a host to VM", tb.host, "10.177.0.10:17080", "vm:17080 10.177.0.1", false},
		{"b external DNAT keeps client address", tb.ext, "192.0.2.1:17080", "vm:17080 192.0.2.2", false},
		{"c localhost forward, VM sees gateway", tb.host, "127.0.0.1:17080", "vm:17080 10.177.0.1", false},
		{"d localhost 17122 to guest 22", tb.host, "127.0.0.1:17122", "vm:22 10.177.0.1", false},
		{"d localhost 17100 to guest 9100", tb.host, "127.0.0.1:17100", "vm:9100 10.177.0.1", false},
		{"d external 17113 to guest 9113", tb.ext, "192.0.2.1:17113", "vm:9113 192.0.2.2", false},
		{"e VM outbound masqueraded, 17080 not hijacked", tb.vm, "198.51.100.2:17080", "internet 198.51.100.1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ask(t, c.from, c.addr)
			if err != nil {
				t.Fatalf("connect %s: %v", c.addr, err)
			}
			if got != c.want {
				t.Errorf("%s answered %q, want %q", c.addr, got, c.want)
			}
		})
	}

	t.Run("check all required ok", func(t *testing.T) {
		cr, err := tb.h.Check(tb.cfg, &CheckOptions{RequireVM: true, HealthPort: 18080})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range cr.Lines {
			t.Log(l)
			if l.Required && l.Status != StatusOK {
				t.Errorf("required check failed: %s", l)
			}
		}
		if !cr.OK {
			t.Error("check not OK")
		}
	})

	t.Run("g setup twice same ruleset", func(t *testing.T) {
		rep, err := tb.h.Setup(tb.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Changed {
			t.Errorf("second setup changed something: %v", rep.Lines)
		}
	})
	// The VM's port is not ours: unplug before comparing with afterSetup.
	tb.unplugVM(t)
	if again := snapshot(t, tb.h, sysctlRouteLocalnet("hlsbr0")); again != afterSetup {
		t.Errorf("second setup changed the host:\nfirst:\n%s\nsecond:\n%s", afterSetup, again)
	}

	t.Run("f teardown restores", func(t *testing.T) {
		if _, err := tb.h.Teardown(tb.cfg); err != nil {
			t.Fatal(err)
		}
		if after := snapshot(t, tb.h); after != before {
			t.Errorf("teardown left changes:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if _, err := os.Stat(StatePath(&tb.cfg)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state file left: %v", err)
		}
		rep, err := tb.h.Teardown(tb.cfg)
		if err != nil {
			t.Fatalf("second teardown: %v", err)
		}
		if after := snapshot(t, tb.h); after != before {
			t.Errorf("second teardown changed things: %v", rep.Lines)
		}
	})
}
