package hostnet

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseForward(t *testing.T) {
	f, err := ParseForward("17122:22")
	if err != nil || f != (Forward{17122, 22}) {
		t.Fatalf("got %v %v", f, err)
	}
	for _, bad := range []string{"", "17080", "0:1", "1:0", "x:1", "1:65536", "1:2:3", "-1:2"} {
		if _, err := ParseForward(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: got %v", bad, err)
		}
	}
}

func TestParseOwner(t *testing.T) {
	if u, g, err := ParseOwner("1000"); err != nil || u != 1000 || g != 1000 {
		t.Errorf("1000: %d %d %v", u, g, err)
	}
	if u, g, err := ParseOwner("1000:27"); err != nil || u != 1000 || g != 27 {
		t.Errorf("1000:27: %d %d %v", u, g, err)
	}
	for _, bad := range []string{"alice", "-1", "1:x"} {
		if _, _, err := ParseOwner(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestDefaultConfigIsTheSeeds(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Bridge != "hlsbr0" || c.Tap != "hlstap0" || c.Subnet.String() != "10.177.0.0/24" ||
		c.Gateway.String() != "10.177.0.1" || c.VM.String() != "10.177.0.10" || len(c.Forwards) != 4 {
		t.Errorf("defaults: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]func(*Config){
		"long bridge name":   func(c *Config) { c.Bridge = "abcdefghijklmnop" },
		"slash in tap":       func(c *Config) { c.Tap = "a/b" },
		"same names":         func(c *Config) { c.Tap = c.Bridge },
		"ipv6 subnet":        func(c *Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") },
		"host bits":          func(c *Config) { c.Subnet = netip.MustParsePrefix("10.177.0.1/24") },
		"gateway outside":    func(c *Config) { c.Gateway = netip.MustParseAddr("10.178.0.1") },
		"vm is network":      func(c *Config) { c.VM = netip.MustParseAddr("10.177.0.0") },
		"vm is broadcast":    func(c *Config) { c.VM = netip.MustParseAddr("10.177.0.255") },
		"vm is gateway":      func(c *Config) { c.VM = c.Gateway },
		"duplicate forward":  func(c *Config) { c.Forwards = []Forward{{1, 2}, {1, 3}} },
		"bad mode":           func(c *Config) { c.Mode = "slirp" },
		"macvtap no link":    func(c *Config) { c.Mode = ModeMacvtap },
		"macvtap bad mode":   func(c *Config) { c.Mode, c.Link, c.MacvtapMode = ModeMacvtap, "eth0", "passthru" },
		"no state dir":       func(c *Config) { c.StateDir = "" },
		"owner below -1":     func(c *Config) { c.UID = -2 },
		"subnet too small":   func(c *Config) { c.Subnet = netip.MustParsePrefix("10.177.0.0/31") },
		"macvtap named link": func(c *Config) { c.Mode, c.Link, c.Macvtap = ModeMacvtap, "eth0", "eth0" },
	}
	for name, mut := range cases {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	c := DefaultConfig()
	c.Mode, c.Link = ModeMacvtap, "eth0"
	if err := c.Validate(); err != nil {
		t.Errorf("valid macvtap config: %v", err)
	}
}

func TestSysctlName(t *testing.T) {
	if got := sysctlName(sysctlRouteLocalnet("eth0.100")); got != "net.ipv4.conf.eth0/100.route_localnet" {
		t.Error(got)
	}
}
