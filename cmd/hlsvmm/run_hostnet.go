package main

// `hlsvmm run --net bridge|macvtap|tap|none`: the host network around one
// run. In bridge and macvtap mode the run sets the network up exactly as
// `hlsvmm network setup` does (hostnet.Setup, the same flags) unless it is
// there, and tears down on exit what this run set up, nothing else.
//
// Who tears down: the state file of hostnet records what setup made; next
// to it a run keeps run-NAME.owner.json (the run that set the network up
// and must tear it down) and run-NAME.PID.json (one lease per live run on
// the network). A run that finds the network made by `network setup` (no
// owner file) leaves it alone. A second run on the same bridge with another
// TAP joins: its TAP lives as long as it does, the port forwards stay with
// the VM the network was set up for. When the owner exits while other runs
// still use the network, the network passes to one of them. A run killed
// with SIGKILL leaves the state and its owner file: the next run finds the
// owner dead, completes the setup (hostnet.Setup reconciles) and adopts it;
// `network setup` makes it a persistent network instead.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvmm/hlsvmm/hostnet"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// --net modes.
const (
	netBridge  = "bridge"  // TAP on a bridge with NAT and port forwards, set up if missing
	netMacvtap = "macvtap" // a macvtap on --link, set up if missing
	netTap     = "tap"     // --tap as it is: the host network is the caller's business
	netNone    = "none"    // no network device
)

// hostnetFlags are run's --net, --keep-network and the flags of `network
// setup` (shared definitions) except --mode (that is --net) and --tap (run
// has its own, netFlags).
func hostnetFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "net", Value: netBridge, Usage: "bridge (set up hlsbr0, TAP, NAT and port forwards unless there; torn down on exit), macvtap (on --link), tap (--tap as it is, host network untouched) or none"},
		&cli.BoolFlag{Name: "keep-network", Usage: "leave the network this run set up in place on exit (`hlsvmm network teardown` removes it)"},
	}
	for _, f := range networkFlags() {
		switch f.Names()[0] {
		case "mode", "tap":
			continue
		}
		flags = append(flags, f)
	}
	return flags
}

// hostNetPlan is the checked --net configuration; nil for tap and none.
type hostNetPlan struct {
	cfg      hostnet.Config
	keep     bool
	forwards bool // --forward given
	ipArg    bool // append ip= to the cmdline
}

// parseRunNet checks --net and the network flags before anything is opened
// and returns the network device's options (nil: none) and the plan (nil:
// the host network is not run's business).
func parseRunNet(c *cli.Context) (*netOptions, *hostNetPlan, error) {
	mode := c.String("net")
	switch mode {
	case netNone:
		for _, f := range []string{"tap", "mac", "vhost", "queues"} {
			if c.IsSet(f) {
				return nil, nil, fmt.Errorf("--%s: --net none has no network device", f)
			}
		}
		return nil, nil, nil
	case netTap:
		if c.String("tap") == "" {
			return nil, nil, errors.New("--net tap needs --tap NAME")
		}
		o, err := parseNetFlags(c)
		return o, nil, err
	case netBridge, netMacvtap:
	default:
		return nil, nil, fmt.Errorf("--net %q: want bridge, macvtap, tap or none", mode)
	}
	cfg, err := networkFlagValues(c)
	if err != nil {
		return nil, nil, err
	}
	cfg.Mode = hostnet.Mode(mode)
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	p := &hostNetPlan{cfg: cfg, keep: c.Bool("keep-network"), forwards: c.IsSet("forward")}
	// In macvtap mode the guest is on the NIC's LAN: its address is the
	// user's to give (--vm-ip with --gateway/--subnet, or ip= in --cmdline).
	p.ipArg = mode == netBridge || c.IsSet("vm-ip")
	tap := cfg.Tap
	if mode == netMacvtap {
		tap = cfg.Macvtap
	}
	o, err := netOptionsFor(c, tap)
	if err == nil {
		o.managed = true
	}
	if err == nil && !c.IsSet("mac") && cfg.VM != hostnet.DefaultConfig().VM {
		o.mac = vmMAC(cfg.VM) // a second VM gets its own MAC without --mac
	}
	return o, p, err
}

// vmMAC is the locally administered MAC 02:00:A:B:C:D for the VM address
// A.B.C.D, the default --mac of a VM at another --vm-ip than 10.177.0.10.
func vmMAC(a netip.Addr) [6]byte {
	b := a.As4()
	return [6]byte{0x02, 0x00, b[0], b[1], b[2], b[3]}
}

// cmdline appends ip=VM::GATEWAY:NETMASK::eth0:off unless the command line
// already has an ip= parameter.
func (p *hostNetPlan) cmdline(s string) string {
	if p == nil || !p.ipArg {
		return s
	}
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "ip=") {
			return s
		}
	}
	mask := net.IP(net.CIDRMask(p.cfg.Subnet.Bits(), 32)).String()
	return strings.TrimSpace(fmt.Sprintf("%s ip=%v::%v:%s::eth0:off", s, p.cfg.VM, p.cfg.Gateway, mask))
}

// status prints one ✓/•/⚠ line the way `network setup` does.
func status(st hostnet.Status, format string, args ...any) {
	printLines([]hostnet.Line{{Status: st, Text: fmt.Sprintf(format, args...)}})
}

// runLease is a run using a network: its process and that process's start
// time (so a reused PID is not taken for it).
type runLease struct {
	PID   int        `json:"pid"`
	Start uint64     `json:"start"`
	Tap   string     `json:"tap"`
	VM    netip.Addr `json:"vm"`
}

func selfLease(tap string, vm netip.Addr) (runLease, error) {
	st, err := procStart(os.Getpid())
	return runLease{PID: os.Getpid(), Start: st, Tap: tap, VM: vm}, err
}

// procStart is field 22 of /proc/PID/stat, the start time in clock ticks.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func (l runLease) alive() bool {
	st, err := procStart(l.PID)
	return err == nil && st == l.Start
}

func (l runLease) self() bool { return l.PID == os.Getpid() }

// hostNet is the network of one run between up and down.
type hostNet struct {
	plan   *hostNetPlan
	h      *hostnet.Host
	me     runLease
	join   bool // a second VM on a bridge set up for another TAP
	net    hostnet.Config
	device string // macvtap: /dev/tapN
}

func (p *hostNetPlan) stateFile(suffix string) string {
	return filepath.Join(p.cfg.StateDir, "run-"+p.cfg.Name()+suffix)
}

// lock serializes runs deciding about one network (flock, released when
// the returned function runs or the process dies).
func (p *hostNetPlan) lock() (func(), error) {
	if err := os.MkdirAll(p.cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", p.cfg.StateDir, err)
	}
	path := p.stateFile(".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func readLease(path string) (*runLease, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l runLease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &l, nil
}

func writeLease(path string, l runLease) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	return os.Rename(tmp, path)
}

// leases are the live runs on the network other than this one; leases of
// dead runs are removed.
func (p *hostNetPlan) leases() []runLease {
	paths, _ := filepath.Glob(p.stateFile(".[0-9]*.json"))
	var out []runLease
	for _, path := range paths {
		l, err := readLease(path)
		if err != nil || l == nil {
			continue
		}
		if !l.alive() {
			os.Remove(path)
			continue
		}
		if !l.self() {
			out = append(out, *l)
		}
	}
	return out
}

// up sets up or joins the network (see the file comment) and records this
// run's lease. It prints the status lines.
func (p *hostNetPlan) up() (_ *hostNet, err error) {
	if p == nil {
		return nil, nil
	}
	unlock, err := p.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	h, err := hostnet.OpenHost()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	s := &hostNet{plan: p, h: h, net: p.cfg}
	tap := p.cfg.Tap
	if p.cfg.Mode == hostnet.ModeMacvtap {
		tap = p.cfg.Macvtap
	}
	if s.me, err = selfLease(tap, p.cfg.VM); err != nil {
		return nil, err
	}
	st, err := hostnet.LoadState(p.cfg)
	if err != nil {
		return nil, err
	}
	owner, err := readLease(p.stateFile(".owner.json"))
	if err != nil {
		return nil, err
	}
	for _, l := range p.leases() {
		if l.Tap == tap {
			return nil, fmt.Errorf("TAP %s is busy: hlsvmm run (pid %d) uses it; give this VM its own --tap, --mac, --vm-ip and --serial port", tap, l.PID)
		}
		if p.cfg.Mode == hostnet.ModeBridge && l.VM == p.cfg.VM {
			return nil, fmt.Errorf("--vm-ip %v: hlsvmm run (pid %d, TAP %s) has that address; give this VM its own", p.cfg.VM, l.PID, l.Tap)
		}
	}
	if st != nil && p.cfg.Mode == hostnet.ModeBridge && st.Config.Mode == hostnet.ModeBridge && st.Config.Tap != p.cfg.Tap {
		return s, s.joinBridge(st)
	}
	if owner != nil && owner.alive() && !owner.self() {
		return nil, fmt.Errorf("TAP %s is busy: hlsvmm run (pid %d) uses the network on %s; give this VM its own --tap, --mac, --vm-ip and --serial port", tap, owner.PID, p.cfg.Name())
	}
	rep, err := h.Setup(p.cfg)
	printLines(rep.Lines)
	if err != nil {
		if len(rep.Lines) > 0 {
			status(hostnet.StatusFail, "network setup failed; everything it changed was rolled back")
		}
		return nil, err
	}
	s.device = rep.Device
	switch {
	case st == nil:
		if err := writeLease(p.stateFile(".owner.json"), s.me); err != nil {
			return nil, err
		}
	case owner != nil:
		if !owner.alive() {
			status(hostnet.StatusInfo, "Took over the network of hlsvmm run pid %d, which ended without tearing it down", owner.PID)
		}
		if err := writeLease(p.stateFile(".owner.json"), s.me); err != nil {
			return nil, err
		}
	default:
		status(hostnet.StatusInfo, "Network %s was set up before this run (hlsvmm network setup): left in place on exit", p.cfg.Name())
	}
	if p.cfg.Mode == hostnet.ModeMacvtap {
		status(hostnet.StatusOK, "macvtap %s on %s (%s)", p.cfg.Macvtap, p.cfg.Link, s.device)
	} else {
		status(hostnet.StatusOK, "Network ready: bridge %s %v/%d, TAP %s, VM %v", p.cfg.Bridge, p.cfg.Gateway, p.cfg.Subnet.Bits(), p.cfg.Tap, p.cfg.VM)
	}
	return s, writeLease(p.stateFile(fmt.Sprintf(".%d.json", s.me.PID)), s.me)
}

// joinBridge makes this run a second VM on a bridge set up for another TAP.
func (s *hostNet) joinBridge(st *hostnet.State) error {
	p, n := s.plan, st.Config
	if p.cfg.Subnet != n.Subnet || p.cfg.Gateway != n.Gateway {
		return fmt.Errorf("bridge %s is set up for %v with gateway %v, not %v/%v", n.Bridge, n.Subnet, n.Gateway, p.cfg.Subnet, p.cfg.Gateway)
	}
	if p.cfg.VM == n.VM {
		return fmt.Errorf("--vm-ip %v is the address of the VM on TAP %s, for which %s was set up; give this VM its own --vm-ip, --tap, --mac", p.cfg.VM, n.Tap, n.Bridge)
	}
	s.join = true
	s.net.Forwards = n.Forwards
	status(hostnet.StatusInfo, "Bridge %s is set up for TAP %s, VM %v: this VM joins it on TAP %s at %v", n.Bridge, n.Tap, n.VM, p.cfg.Tap, p.cfg.VM)
	if len(n.Forwards) > 0 {
		msg := "the port forwards (127.0.0.1:%d ...) go to %v, not to this VM"
		if p.forwards {
			msg = "--forward ignored: " + msg
		}
		status(hostnet.StatusWarn, msg, n.Forwards[0].HostPort, n.VM)
	}
	return writeLease(p.stateFile(fmt.Sprintf(".%d.json", s.me.PID)), s.me)
}

// opened finishes what needs the open TAP: a joining run's TAP goes on the
// bridge (it is removed with the run's last fd).
func (s *hostNet) opened() error {
	if s == nil || !s.join {
		return nil
	}
	if err := s.h.AttachTap(s.plan.cfg.Tap, s.plan.cfg.Bridge); err != nil {
		return err
	}
	status(hostnet.StatusOK, "TAP %s on %s (removed when this run ends)", s.plan.cfg.Tap, s.plan.cfg.Bridge)
	return nil
}

// macvtapIndex is the interface index of the macvtap setup made (its
// device is /dev/tapINDEX), 0 in bridge mode.
func (s *hostNet) macvtapIndex() (int, error) {
	if s == nil || s.device == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(s.device, "/dev/tap"))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("macvtap device %q: no interface index", s.device)
	}
	return n, nil
}

// down removes this run's lease and, if this run owns the network (or its
// owner is dead) and no other run uses it, tears it down (unless
// --keep-network). Call it after the network device is closed.
func (s *hostNet) down() {
	if s == nil {
		return
	}
	defer s.h.Close()
	p := s.plan
	unlock, err := p.lock()
	if err != nil {
		slog.Error("network teardown", "err", err)
		return
	}
	defer unlock()
	os.Remove(p.stateFile(fmt.Sprintf(".%d.json", s.me.PID)))
	ownerPath := p.stateFile(".owner.json")
	owner, err := readLease(ownerPath)
	if err != nil {
		slog.Error("network teardown", "err", err)
		return
	}
	if owner == nil || (!owner.self() && owner.alive()) {
		return // set up by `network setup`, or another live run's
	}
	if p.keep {
		os.Remove(ownerPath)
		status(hostnet.StatusInfo, "--keep-network: network %s left in place (hlsvmm network teardown removes it)", p.cfg.Name())
		return
	}
	if others := p.leases(); len(others) > 0 {
		if err := writeLease(ownerPath, others[0]); err != nil {
			slog.Error("network hand-over", "err", err)
			return
		}
		status(hostnet.StatusInfo, "Network %s left to hlsvmm run pid %d (TAP %s), which still uses it", p.cfg.Name(), others[0].PID, others[0].Tap)
		return
	}
	cfg := p.cfg
	if st, err := hostnet.LoadState(cfg); err == nil && st != nil {
		cfg = st.Config
		cfg.StateDir = p.cfg.StateDir
	}
	rep, err := s.h.Teardown(cfg)
	printLines(rep.Lines)
	if err != nil {
		status(hostnet.StatusFail, "network teardown: %v (hlsvmm network teardown retries)", err)
		return
	}
	os.Remove(ownerPath)
	status(hostnet.StatusOK, "Network %s torn down", p.cfg.Name())
}

// bootStatus prints the console and datapath lines and, in bridge mode,
// waits in the background for the guest to listen on the first forwarded
// guest port (the origin's 17080 by default) and says so.
func bootStatus(ctx context.Context, s *hostNet, con net.Addr, nd *netDevice, o *netOptions) {
	if con != nil {
		status(hostnet.StatusOK, "console on %s", con)
	}
	if nd != nil {
		status(hostnet.StatusOK, "net0 %s on %s, %s datapath", net.HardwareAddr(o.mac[:]), nd.tap.Name(), nd.datapath)
	}
	if s == nil || s.net.Mode != hostnet.ModeBridge || len(s.net.Forwards) == 0 {
		return
	}
	port := s.net.Forwards[0].GuestPort
	addr := netip.AddrPortFrom(s.plan.cfg.VM, port).String()
	via := ""
	if !s.join {
		via = fmt.Sprintf(" (127.0.0.1:%d on the host)", s.net.Forwards[0].HostPort)
	}
	start := time.Now()
	go func() {
		d := net.Dialer{Timeout: time.Second}
		for {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				status(hostnet.StatusOK, "guest listening on %s%s after %.0f s", addr, via, time.Since(start).Seconds())
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
}

// forgetRunOwner removes the record of the run that set cfg's network up:
// after `network setup` the network is the user's, after `network
// teardown` there is none.
func forgetRunOwner(cfg hostnet.Config) {
	p := &hostNetPlan{cfg: cfg}
	os.Remove(p.stateFile(".owner.json"))
}
