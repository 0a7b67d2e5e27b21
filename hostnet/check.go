package hostnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// VhostNetDevice is the kernel's vhost-net device.
const VhostNetDevice = "/dev/vhost-net"

// CheckOptions tune Check; nil means defaults.
type CheckOptions struct {
	// RequireVM makes the VM ping and /health required (a VM should run);
	// otherwise they are informational.
	RequireVM bool
	// Timeout for the ping and the HTTP request (default 1 s).
	Timeout time.Duration
	// HealthPort is the guest port serving /health (default 17080).
	HealthPort uint16
}

// CheckReport is the outcome of Check.
type CheckReport struct {
	Report
	OK bool `json:"ok"`
}

// Check verifies the host network of cfg and the VM behind it. OK is false
// if a required check failed.
func (h *Host) Check(cfg Config, opts *CheckOptions) (*CheckReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := CheckOptions{Timeout: time.Second, HealthPort: 17080}
	if opts != nil {
		o.RequireVM = opts.RequireVM
		if opts.Timeout > 0 {
			o.Timeout = opts.Timeout
		}
		if opts.HealthPort != 0 {
			o.HealthPort = opts.HealthPort
		}
	}
	rep := &CheckReport{}
	add := func(l Line) { rep.Lines = append(rep.Lines, l) }
	if cfg.Mode == ModeMacvtap {
		for _, l := range h.checkMacvtap(&cfg) {
			add(l)
		}
	} else {
		add(h.checkBridge(&cfg))
		add(h.checkTap(&cfg))
		for _, l := range h.checkTables(&cfg) {
			add(l)
		}
		add(h.checkSysctl("ip_forward", sysctlIPForward, "IP forwarding"))
		add(h.checkSysctl("route_localnet", sysctlRouteLocalnet(cfg.Bridge), "route_localnet on "+cfg.Bridge+" (127.0.0.1 forwards)"))
		for _, l := range h.checkBridgeNF() {
			add(l)
		}
		for _, l := range h.checkForeignDrops() {
			add(l)
		}
		add(h.checkConntrack(&cfg))
	}
	add(checkVhostNet())
	if cfg.Mode == ModeBridge {
		ping := h.checkPing(cfg.VM, o.Timeout, o.RequireVM)
		add(ping)
		if ping.Status == StatusOK || o.RequireVM {
			add(h.checkHealth(cfg.VM, o.HealthPort, o.Timeout, o.RequireVM))
		}
	}
	rep.OK = true
	for _, l := range rep.Lines {
		if l.Required && l.Status == StatusFail {
			rep.OK = false
		}
	}
	return rep, nil
}

func required(name string, ok bool, okText, failText, fix string) Line {
	if ok {
		return Line{Name: name, Status: StatusOK, Text: okText, Required: true}
	}
	return Line{Name: name, Status: StatusFail, Text: failText, Fix: fix, Required: true}
}

const fixSetup = "sudo hlsvmm network setup (or make network-setup)"

func (h *Host) checkBridge(cfg *Config) Line {
	gw := netip.PrefixFrom(cfg.Gateway, cfg.Subnet.Bits())
	br, err := h.linkByName(cfg.Bridge)
	switch {
	case err != nil:
		return required("bridge", false, "", fmt.Sprintf("Bridge %s: %v", cfg.Bridge, err), "")
	case br == nil:
		return required("bridge", false, "", fmt.Sprintf("Bridge %s not found", cfg.Bridge), fixSetup)
	case br.Type() != "bridge":
		return required("bridge", false, "", fmt.Sprintf("%s is a %s, not a bridge", cfg.Bridge, br.Type()), "")
	}
	addrs, err := h.ipv4Addrs(br)
	if err != nil {
		return required("bridge", false, "", err.Error(), "")
	}
	has := false
	for _, a := range addrs {
		has = has || a == gw
	}
	if !has {
		return required("bridge", false, "", fmt.Sprintf("Bridge %s exists but has not %v (has %v)", cfg.Bridge, gw, addrs), fixSetup)
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		return required("bridge", false, "", fmt.Sprintf("Bridge %s (%v) is down", cfg.Bridge, gw), fixSetup)
	}
	return required("bridge", true, fmt.Sprintf("Bridge %s exists, %v, up", cfg.Bridge, gw), "", "")
}

func (h *Host) checkTap(cfg *Config) Line {
	l, err := h.linkByName(cfg.Tap)
	switch {
	case err != nil:
		return required("tap", false, "", fmt.Sprintf("TAP %s: %v", cfg.Tap, err), "")
	case l == nil:
		return required("tap", false, "", fmt.Sprintf("TAP %s not found", cfg.Tap), fixSetup)
	case !isTap(l):
		return required("tap", false, "", fmt.Sprintf("%s is a %s, not a TAP", cfg.Tap, describeKind(l)), "")
	}
	br, _ := h.linkByName(cfg.Bridge)
	if br == nil || l.Attrs().MasterIndex != br.Attrs().Index {
		return required("tap", false, "", fmt.Sprintf("TAP %s is not attached to %s", cfg.Tap, cfg.Bridge), fixSetup)
	}
	t := l.(*netlink.Tuntap)
	mq := "multi_queue"
	if t.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
		mq = "single queue"
	}
	return required("tap", true, fmt.Sprintf("TAP %s exists on %s (%s, owner uid %d)", cfg.Tap, cfg.Bridge, mq, int32(t.Owner)), "", "")
}

func (h *Host) checkTables(cfg *Config) []Line {
	c, err := h.nft()
	if err != nil {
		return []Line{required("nftables", false, "", err.Error(), "")}
	}
	defer c.CloseLasting()
	var lines []Line
	want := buildRuleset(cfg)
	for _, ts := range want {
		name := "table-" + ts.name
		_, err := c.ListTableOfFamily(ts.name, nftables.TableFamilyIPv4)
		if errors.Is(err, unix.ENOENT) {
			lines = append(lines, required(name, false, "", fmt.Sprintf("nftables table ip %s not found", ts.name), fixSetup))
			continue
		}
		if err != nil {
			lines = append(lines, required(name, false, "", classifyNFT("list table ip "+ts.name, err).Error(), ""))
			continue
		}
		same, err := rulesetMatches(c, []tableSpec{ts})
		if err != nil {
			lines = append(lines, required(name, false, "", err.Error(), ""))
			continue
		}
		lines = append(lines, required(name, same, fmt.Sprintf("nftables table ip %s matches the configuration", ts.name),
			fmt.Sprintf("nftables table ip %s differs from the configuration", ts.name), fixSetup))
	}
	return lines
}

func (h *Host) checkSysctl(name, key, what string) Line {
	v, err := h.readSysctl(key)
	if errors.Is(err, os.ErrNotExist) {
		return required(name, false, "", what+": not set (no such interface)", fixSetup)
	}
	if err != nil {
		return required(name, false, "", err.Error(), fixSetup)
	}
	return required(name, v == "1", what+" enabled", fmt.Sprintf("%s disabled (%s = %s)", what, sysctlName(key), v), fixSetup)
}

// checkBridgeNF warns when br_netfilter sends bridged frames through the
// ip hooks (Docker loads it): then VM-to-VM and some host traffic on the
// bridge meets every table's forward chain.
func (h *Host) checkBridgeNF() []Line {
	v, err := h.readSysctl(sysctlBridgeNFCallV4)
	if errors.Is(err, os.ErrNotExist) {
		return []Line{{Name: "bridge-nf", Status: StatusOK, Text: "br_netfilter not loaded (bridged frames skip iptables/nftables ip hooks)"}}
	}
	if err != nil {
		return []Line{{Name: "bridge-nf", Status: StatusWarn, Text: err.Error()}}
	}
	if v == "0" {
		return []Line{{Name: "bridge-nf", Status: StatusOK, Text: "bridge-nf-call-iptables = 0"}}
	}
	return []Line{{Name: "bridge-nf", Status: StatusWarn,
		Text: "bridge-nf-call-iptables = 1: frames bridged on the VM bridge also pass the ip forward hooks of every table",
		Fix:  "sudo sysctl -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 (unless Docker needs them)"}}
}

// checkForeignDrops reports base chains of other tables on the hooks our
// traffic crosses with a drop policy, and forward chains with drop rules:
// an accept in hls_filter does not override a drop in another table.
func (h *Host) checkForeignDrops() []Line {
	c, err := h.nft()
	if err != nil {
		return []Line{{Name: "foreign-drop", Status: StatusWarn, Text: err.Error()}}
	}
	defer c.CloseLasting()
	chains, err := c.ListChains()
	if err != nil {
		return []Line{{Name: "foreign-drop", Status: StatusWarn, Text: classifyNFT("list nftables chains", err).Error()}}
	}
	var lines []Line
	for _, ch := range chains {
		fam := ch.Table.Family
		if fam != nftables.TableFamilyIPv4 && fam != nftables.TableFamilyINet {
			continue
		}
		if fam == nftables.TableFamilyIPv4 && (ch.Table.Name == NATTable || ch.Table.Name == FilterTable) {
			continue
		}
		if ch.Hooknum == nil {
			continue
		}
		hook := *ch.Hooknum
		if hook != unix.NF_INET_FORWARD && hook != unix.NF_INET_PRE_ROUTING && hook != unix.NF_INET_POST_ROUTING && hook != unix.NF_INET_LOCAL_OUT {
			continue
		}
		where := fmt.Sprintf("table %s %s chain %s (hook %s)", familyName(fam), ch.Table.Name, ch.Name, hookName(hook))
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			lines = append(lines, Line{Name: "foreign-drop", Status: StatusWarn,
				Text: where + " has policy drop: it drops VM traffic whatever hls_filter accepts",
				Fix:  "accept hlsbr0 traffic in that chain (e.g. iifname/oifname \"hlsbr0\" accept) or make its policy accept"})
			continue
		}
		if hook != unix.NF_INET_FORWARD {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			continue
		}
		for _, r := range rules {
			if hasDrop(r.Exprs) {
				lines = append(lines, Line{Name: "foreign-drop", Status: StatusWarn,
					Text: where + " has drop rules that may shadow hls_filter's accepts",
					Fix:  "check that they do not match traffic from or to the VM bridge"})
				break
			}
		}
	}
	if len(lines) == 0 {
		lines = append(lines, Line{Name: "foreign-drop", Status: StatusOK, Text: "No other nftables table drops on the forward or NAT hooks"})
	}
	return lines
}

func hasDrop(exprs []expr.Any) bool {
	for _, e := range exprs {
		if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictDrop {
			return true
		}
	}
	return false
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprintf("family %d", f)
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case unix.NF_INET_PRE_ROUTING:
		return "prerouting"
	case unix.NF_INET_LOCAL_IN:
		return "input"
	case unix.NF_INET_FORWARD:
		return "forward"
	case unix.NF_INET_LOCAL_OUT:
		return "output"
	case unix.NF_INET_POST_ROUTING:
		return "postrouting"
	}
	return fmt.Sprintf("%d", h)
}

func (h *Host) checkConntrack(cfg *Config) Line {
	flows, err := h.nl.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return Line{Name: "conntrack", Status: StatusInfo, Text: "conntrack table not readable: " + err.Error()}
	}
	vm := net.IP(cfg.VM.AsSlice())
	n := 0
	for _, f := range flows {
		if f.Forward.DstIP.Equal(vm) || f.Reverse.SrcIP.Equal(vm) || f.Forward.SrcIP.Equal(vm) {
			n++
		}
	}
	return Line{Name: "conntrack", Status: StatusInfo, Text: fmt.Sprintf("%d conntrack entries for %v", n, cfg.VM)}
}

func checkVhostNet() Line {
	f, err := os.OpenFile(VhostNetDevice, os.O_RDWR, 0)
	if err != nil {
		text := fmt.Sprintf("%s not usable: %v (hlsvmm falls back to its userspace datapath)", VhostNetDevice, err)
		fix := "sudo modprobe vhost_net"
		if errors.Is(err, os.ErrPermission) {
			fix = "run hlsvmm as root or give its user access to " + VhostNetDevice + " (not chmod 666)"
		}
		return Line{Name: "vhost-net", Status: StatusWarn, Text: text, Fix: fix}
	}
	f.Close()
	return Line{Name: "vhost-net", Status: StatusOK, Text: VhostNetDevice + " available"}
}

func vmLine(name string, requireVM bool, ok bool, okText, failText string) Line {
	if ok {
		return Line{Name: name, Status: StatusOK, Text: okText, Required: requireVM}
	}
	if requireVM {
		return Line{Name: name, Status: StatusFail, Text: failText, Required: true}
	}
	return Line{Name: name, Status: StatusInfo, Text: failText + " (may not be running)"}
}

// checkPing sends one ICMP echo to the VM from the host's namespace.
func (h *Host) checkPing(vm netip.Addr, timeout time.Duration, requireVM bool) Line {
	err := h.ping(vm, timeout)
	text := fmt.Sprintf("VM not reachable at %v", vm)
	if err != nil {
		text += ": " + err.Error()
	}
	return vmLine("vm-ping", requireVM, err == nil, fmt.Sprintf("VM reachable at %v (ping)", vm), text)
}

func (h *Host) ping(vm netip.Addr, timeout time.Duration) error {
	var conn *icmp.PacketConn
	privileged := true
	err := h.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			privileged = false
			conn, err = icmp.ListenPacket("udp4", "0.0.0.0")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("open ICMP socket: %w", err)
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("hlsvmm check")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	var dst net.Addr = &net.IPAddr{IP: net.IP(vm.AsSlice())}
	if !privileged {
		dst = &net.UDPAddr{IP: net.IP(vm.AsSlice())}
	}
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := conn.WriteTo(b, dst); err != nil {
		return fmt.Errorf("send echo: %w", err)
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("no echo reply: %w", err)
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || (privileged && echo.ID != id) {
			continue
		}
		if peerAddr(peer) == vm {
			return nil
		}
	}
}

func peerAddr(a net.Addr) netip.Addr {
	var ip net.IP
	switch v := a.(type) {
	case *net.IPAddr:
		ip = v.IP
	case *net.UDPAddr:
		ip = v.IP
	}
	ad, _ := netip.AddrFromSlice(ip.To4())
	return ad
}

// DialTCP connects to addr from inside the host's namespace (the socket
// stays there).
func (h *Host) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "tcp4", addr)
		return err
	})
	return conn, err
}

func (h *Host) checkHealth(vm netip.Addr, port uint16, timeout time.Duration, requireVM bool) Line {
	url := fmt.Sprintf("http://%s/health", netip.AddrPortFrom(vm, port))
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return h.DialTCP(ctx, addr) },
	}}
	resp, err := client.Get(url)
	if err == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
	}
	text := "HLS origin not responding at " + url
	if err != nil {
		text += ": " + err.Error()
	}
	return vmLine("vm-health", requireVM, err == nil, "HLS origin responding at "+url, text)
}

func (h *Host) checkMacvtap(cfg *Config) []Line {
	l, err := h.linkByName(cfg.Macvtap)
	switch {
	case err != nil:
		return []Line{required("macvtap", false, "", err.Error(), "")}
	case l == nil:
		return []Line{required("macvtap", false, "", fmt.Sprintf("macvtap %s not found", cfg.Macvtap), "sudo hlsvmm network setup --mode macvtap --link "+cfg.Link)}
	case l.Type() != "macvtap":
		return []Line{required("macvtap", false, "", fmt.Sprintf("%s is a %s, not a macvtap", cfg.Macvtap, l.Type()), "")}
	}
	dev := MacvtapDevice(l.Attrs().Index)
	_, serr := os.Stat(dev)
	return []Line{
		required("macvtap", true, fmt.Sprintf("macvtap %s on %s", cfg.Macvtap, h.linkName(l.Attrs().ParentIndex)), "", ""),
		required("macvtap-device", serr == nil, dev+" present", fmt.Sprintf("%s: %v", dev, serr), ""),
		{Name: "macvtap-limit", Status: StatusInfo, Text: MacvtapLimitation},
	}
}
