package hostnet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requireRoot skips (or, under CI=true, fails) tests that need root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root (CAP_NET_ADMIN, network namespaces): run `sudo go test ./hostnet/`"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// inNS runs f on a locked OS thread inside ns, restoring the thread after.
func inNS(t *testing.T, ns netns.NsHandle, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- err // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// newNS makes a fresh network namespace with lo up, closed at cleanup.
func newNS(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	nsc := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.New() // unshares this thread into it
		if err != nil {
			errc <- err
			return
		}
		if err := netns.Set(orig); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		nsc <- ns
	}()
	var ns netns.NsHandle
	select {
	case err := <-errc:
		t.Fatalf("new netns: %v", err)
	case ns = <-nsc:
	}
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(func() { nl.Close(); ns.Close() })
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return ns, nl
}

func mustAddr(t *testing.T, nl *netlink.Handle, link, cidr string) {
	t.Helper()
	l, err := nl.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, link, err)
	}
	if err := nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

func mustDefaultRoute(t *testing.T, nl *netlink.Handle, gw string) {
	t.Helper()
	if err := nl.RouteAdd(&netlink.Route{Gw: net.ParseIP(gw)}); err != nil {
		t.Fatalf("default route via %s: %v", gw, err)
	}
}

// veth makes a veth pair: hostName in the namespace of hnl, peerName in
// peerNS.
func veth(t *testing.T, hnl *netlink.Handle, hostName, peerName string, peerNS netns.NsHandle) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = hostName
	v := &netlink.Veth{LinkAttrs: la, PeerName: peerName, PeerNamespace: netlink.NsFd(int(peerNS))}
	if err := hnl.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s: %v", hostName, peerName, err)
	}
}

// serve starts a TCP server in ns on port that answers "<tag> <peer>\n".
func serve(t *testing.T, ns netns.NsHandle, port int, tag string) {
	t.Helper()
	var ln net.Listener
	if err := inNS(t, ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatalf("listen %s:%d: %v", tag, port, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", tag, c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// ask connects from ns to addr and returns the server's line.
func ask(t *testing.T, ns netns.NsHandle, addr string) (string, error) {
	t.Helper()
	var c net.Conn
	err := inNS(t, ns, func() error {
		var err error
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err = d.DialContext(context.Background(), "tcp4", addr)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// snapshot is a namespace's ruleset, links and the sysctls we touch, as
// text, to compare before and after.
func snapshot(t *testing.T, h *Host, extraSysctls ...string) string {
	t.Helper()
	var b strings.Builder
	c, err := h.nft()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	chains, err := c.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, ch := range chains {
		l := fmt.Sprintf("chain %d %s %s type=%s", ch.Table.Family, ch.Table.Name, ch.Name, ch.Type)
		if ch.Hooknum != nil {
			l += fmt.Sprintf(" hook=%d prio=%d", *ch.Hooknum, *ch.Priority)
		}
		if ch.Policy != nil {
			l += fmt.Sprintf(" policy=%d", *ch.Policy)
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			m, err := marshalExprs(r.Exprs)
			if err != nil {
				t.Fatal(err)
			}
			l += fmt.Sprintf("\n  rule %x", m)
		}
		lines = append(lines, l)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		lines = append(lines, fmt.Sprintf("table %d %s", tb.Family, tb.Name))
	}
	links, err := h.nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		a := l.Attrs()
		addrs, _ := h.ipv4Addrs(l)
		lines = append(lines, fmt.Sprintf("link %s %s master=%d flags=%v addrs=%v", a.Name, l.Type(), a.MasterIndex, a.Flags&^net.FlagRunning, addrs)) // carrier comes and goes
	}
	for _, k := range append([]string{sysctlIPForward, "net/ipv4/conf/all/route_localnet"}, extraSysctls...) {
		v, err := h.readSysctl(k)
		if err != nil {
			v = err.Error()
		}
		lines = append(lines, "sysctl "+k+"="+v)
	}
	sort.Strings(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// addForeignTable adds "table inet foreign" with a forward chain and a
// rule, standing for Docker's or libvirt's tables.
func addForeignTable(t *testing.T, h *Host, policy nftables.ChainPolicy) {
	t.Helper()
	c, err := h.nft()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tb := c.AddTable(&nftables.Table{Name: "foreign", Family: nftables.TableFamilyINet})
	hook, prio := *nftables.ChainHookForward, *nftables.ChainPriorityFilter
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: &hook, Priority: &prio, Policy: &policy})
	c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: concat(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq, "foo0"), verdict(expr.VerdictAccept))})
	if err := c.Flush(); err != nil {
		t.Fatalf("add foreign table: %v", err)
	}
}

// serveHealth serves HTTP GET /health (200 "ok") in ns on port.
func serveHealth(t *testing.T, ns netns.NsHandle, port int) {
	t.Helper()
	var ln net.Listener
	if err := inNS(t, ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}
