// Package hostnet sets up, checks and tears down the host side of hlsvmm's
// networking: a bridge with the gateway address, a TAP (or a macvtap) for the
// guest, sysctls, and the nftables tables hls_nat and hls_filter with the NAT
// and port forwards. It also opens TAP and macvtap devices for the virtio-net
// device (see Tap). Everything goes through netlink and /proc/sys, never
// through the ip, nft or sysctl commands.
package hostnet

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Mode is how the guest is connected to the host.
type Mode string

const (
	// ModeBridge: a TAP on the bridge, NAT and port forwards on the host.
	ModeBridge Mode = "bridge"
	// ModeMacvtap: a macvtap on a host NIC; the guest is on the NIC's LAN.
	ModeMacvtap Mode = "macvtap"
)

// Forward is a TCP port forward from a host port to a guest port.
type Forward struct {
	HostPort  uint16 `json:"host_port"`
	GuestPort uint16 `json:"guest_port"`
}

func (f Forward) String() string { return fmt.Sprintf("%d:%d", f.HostPort, f.GuestPort) }

// ParseForward parses "HOST:GUEST" (both TCP ports, 1-65535).
func ParseForward(s string) (Forward, error) {
	h, g, ok := strings.Cut(s, ":")
	if !ok {
		return Forward{}, invalidf("forward %q: want HOST:GUEST, e.g. 17080:17080", s)
	}
	hp, err := parsePort(h)
	if err != nil {
		return Forward{}, invalidf("forward %q: host port: %v", s, err)
	}
	gp, err := parsePort(g)
	if err != nil {
		return Forward{}, invalidf("forward %q: guest port: %v", s, err)
	}
	return Forward{HostPort: hp, GuestPort: gp}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// DefaultForwards is the seed's port table: HLS origin, node exporter, nginx
// exporter, SSH. 17022 (the serial console) is on the host, never forwarded.
func DefaultForwards() []Forward {
	return []Forward{{17080, 17080}, {17100, 9100}, {17113, 9113}, {17122, 22}}
}

// Table names and the state file directory.
const (
	NATTable        = "hls_nat"
	FilterTable     = "hls_filter"
	DefaultStateDir = "/run/hlsvmm"
)

// Config describes the host network. Zero fields take the defaults of
// DefaultConfig when passed through WithDefaults.
type Config struct {
	Mode    Mode         `json:"mode"`
	Bridge  string       `json:"bridge"`
	Tap     string       `json:"tap"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	VM      netip.Addr   `json:"vm"`
	// Forwards replaces the defaults when non-nil.
	Forwards []Forward `json:"forwards"`
	// UID and GID own the TAP or macvtap; -1 means no owner (root only).
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Macvtap mode: the parent NIC, the macvtap's name and its mode.
	Link        string `json:"link,omitempty"`
	Macvtap     string `json:"macvtap,omitempty"`
	MacvtapMode string `json:"macvtap_mode,omitempty"`
	// StateDir holds network-<name>.json, what setup did, for teardown.
	StateDir string `json:"-"`
}

// DefaultConfig is the seed's design: hlsbr0 10.177.0.1/24, hlstap0, VM at
// 10.177.0.10, the seed's forwards, owned by the invoking user.
func DefaultConfig() Config {
	uid, gid := InvokingUser()
	return Config{
		Mode:        ModeBridge,
		Bridge:      "hlsbr0",
		Tap:         "hlstap0",
		Subnet:      netip.MustParsePrefix("10.177.0.0/24"),
		Gateway:     netip.MustParseAddr("10.177.0.1"),
		VM:          netip.MustParseAddr("10.177.0.10"),
		Forwards:    DefaultForwards(),
		UID:         uid,
		GID:         gid,
		Macvtap:     "hlsmvtap0",
		MacvtapMode: "bridge",
		StateDir:    DefaultStateDir,
	}
}

// InvokingUser is the user a TAP should belong to: SUDO_UID/SUDO_GID when
// run through sudo, else the process's own ids.
func InvokingUser() (uid, gid int) {
	uid, gid = os.Getuid(), os.Getgid()
	if s := os.Getenv("SUDO_UID"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			uid = n
		}
	}
	if s := os.Getenv("SUDO_GID"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			gid = n
		}
	}
	return uid, gid
}

// ParseOwner parses UID[:GID]; without GID the group is the UID's number.
func ParseOwner(s string) (uid, gid int, err error) {
	u, g, hasG := strings.Cut(s, ":")
	uid, err = strconv.Atoi(u)
	if err != nil || uid < 0 {
		return 0, 0, invalidf("owner %q: want numeric UID[:GID]", s)
	}
	gid = uid
	if hasG {
		gid, err = strconv.Atoi(g)
		if err != nil || gid < 0 {
			return 0, 0, invalidf("owner %q: want numeric UID[:GID]", s)
		}
	}
	return uid, gid, nil
}

// Validate checks the configuration and returns a one-line ErrInvalidConfig.
func (c *Config) Validate() error {
	switch c.Mode {
	case ModeBridge:
		if err := validName("bridge", c.Bridge); err != nil {
			return err
		}
		if err := validName("tap", c.Tap); err != nil {
			return err
		}
		if c.Bridge == c.Tap {
			return invalidf("bridge and TAP are both named %q", c.Bridge)
		}
		if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
			return invalidf("subnet %v: an IPv4 prefix is needed, e.g. 10.177.0.0/24", c.Subnet)
		}
		if c.Subnet != c.Subnet.Masked() {
			return invalidf("subnet %v has host bits set (did you mean %v?)", c.Subnet, c.Subnet.Masked())
		}
		if c.Subnet.Bits() > 30 || c.Subnet.Bits() < 8 {
			return invalidf("subnet %v: prefix length must be between /8 and /30", c.Subnet)
		}
		if err := c.hostAddr("gateway", c.Gateway); err != nil {
			return err
		}
		if err := c.hostAddr("VM address", c.VM); err != nil {
			return err
		}
		if c.Gateway == c.VM {
			return invalidf("gateway and VM address are both %v", c.VM)
		}
		seen := map[uint16]bool{}
		for _, f := range c.Forwards {
			if f.HostPort == 0 || f.GuestPort == 0 {
				return invalidf("forward %v: port 0", f)
			}
			if seen[f.HostPort] {
				return invalidf("host port %d is forwarded twice", f.HostPort)
			}
			seen[f.HostPort] = true
		}
	case ModeMacvtap:
		if c.Link == "" {
			return invalidf("--mode macvtap needs --link IFACE (the host NIC the guest shares)")
		}
		if err := validName("link", c.Link); err != nil {
			return err
		}
		if err := validName("macvtap", c.Macvtap); err != nil {
			return err
		}
		if c.Link == c.Macvtap {
			return invalidf("macvtap and its link are both named %q", c.Link)
		}
		if _, err := macvtapMode(c.MacvtapMode); err != nil {
			return err
		}
	default:
		return invalidf("mode %q: want bridge or macvtap", c.Mode)
	}
	if c.UID < -1 || c.GID < -1 {
		return invalidf("owner %d:%d: ids must be >= 0 (or -1 for none)", c.UID, c.GID)
	}
	if c.StateDir == "" {
		return invalidf("empty state directory")
	}
	return nil
}

// Name is the device the configuration is about: the bridge, or the
// macvtap. It names the state file.
func (c *Config) Name() string {
	if c.Mode == ModeMacvtap {
		return c.Macvtap
	}
	return c.Bridge
}

func (c *Config) hostAddr(what string, a netip.Addr) error {
	if !a.IsValid() || !a.Is4() {
		return invalidf("%s %v: an IPv4 address is needed", what, a)
	}
	if !c.Subnet.Contains(a) {
		return invalidf("%s %v is not in subnet %v", what, a, c.Subnet)
	}
	if a == c.Subnet.Addr() {
		return invalidf("%s %v is the subnet's network address", what, a)
	}
	if a == broadcast(c.Subnet) {
		return invalidf("%s %v is the subnet's broadcast address", what, a)
	}
	return nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// validName checks a Linux interface name (IFNAMSIZ 16 with the NUL).
func validName(what, n string) error {
	if n == "" {
		return invalidf("%s name is empty", what)
	}
	if len(n) > 15 {
		return invalidf("%s name %q is longer than 15 bytes", what, n)
	}
	if n == "." || n == ".." || strings.ContainsAny(n, "/: \t\n\x00") {
		return invalidf("%s name %q is not a valid interface name", what, n)
	}
	return nil
}
