package hostnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkByName returns nil, nil when there is no such link.
func (h *Host) linkByName(name string) (netlink.Link, error) {
	l, err := h.nl.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return nil, nil
	}
	if err != nil {
		return nil, classify("look up link "+name, err)
	}
	return l, nil
}

// ipv4Addrs lists a link's IPv4 addresses as prefixes (address/len).
func (h *Host) ipv4Addrs(l netlink.Link) ([]netip.Prefix, error) {
	addrs, err := h.nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, classify("list addresses of "+l.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, ok := toPrefix(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

func toIPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().As4()
	return &net.IPNet{IP: net.IP(a[:]), Mask: net.CIDRMask(p.Bits(), 32)}
}

// subnetUsedElsewhere reports a route or address overlapping subnet on a
// link other than the bridge (index brIndex, 0 if it does not exist).
func (h *Host) subnetUsedElsewhere(subnet netip.Prefix, brIndex int) error {
	routes, err := h.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return classify("list routes", err)
	}
	for _, r := range routes {
		p, ok := toPrefix(r.Dst)
		if !ok || p.Bits() == 0 || r.LinkIndex == brIndex || !p.Overlaps(subnet) {
			continue
		}
		return conflictf("subnet %v is already routed via %s (%v); choose another --subnet", subnet, h.linkName(r.LinkIndex), p)
	}
	links, err := h.nl.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return classify("list links", err)
	}
	for _, l := range links {
		if l.Attrs().Index == brIndex {
			continue
		}
		addrs, err := h.ipv4Addrs(l)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.Masked().Overlaps(subnet) {
				return conflictf("subnet %v overlaps address %v on %s; choose another --subnet", subnet, a, l.Attrs().Name)
			}
		}
	}
	return nil
}

func (h *Host) linkName(index int) string {
	l, err := h.nl.LinkByIndex(index)
	if err != nil {
		return fmt.Sprintf("ifindex %d", index)
	}
	return l.Attrs().Name
}

// isTap reports whether l is a TAP (not a TUN).
func isTap(l netlink.Link) bool {
	t, ok := l.(*netlink.Tuntap)
	return ok && t.Mode == netlink.TUNTAP_MODE_TAP
}

// attachedPorts lists the links whose master is the bridge.
func (h *Host) attachedPorts(brIndex int) ([]string, error) {
	links, err := h.nl.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, classify("list links", err)
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == brIndex {
			ports = append(ports, l.Attrs().Name)
		}
	}
	return ports, nil
}

// addrOf is the gateway address setup puts on the bridge.
func addrOf(cfg *Config) *netlink.Addr {
	return &netlink.Addr{IPNet: toIPNet(netip.PrefixFrom(cfg.Gateway, cfg.Subnet.Bits()))}
}
