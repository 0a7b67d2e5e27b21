package main

import (
	"errors"
	"fmt"
	"log/slog"
	stdnet "net"
	"time"

	"github.com/hlsvmm/hlsvmm/hostnet"
	"github.com/hlsvmm/hlsvmm/vhost"
	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
	"github.com/urfave/cli/v2"
)

// The TAP as virtio/net wants it is one queue of a hostnet.Tap.
var _ vnet.Tap = (*hostnet.TapQueue)(nil)

// vhost modes of --vhost.
const (
	vhostAuto = "auto" // vhost-net when /dev/vhost-net works, else the userspace datapath
	vhostOn   = "on"   // vhost-net or fail
	vhostOff  = "off"  // the userspace datapath
)

const defaultMAC = "02:00:00:01:77:01"

// maxQueues is the most --queues takes, and caps its default.
const maxQueues = vnet.MaxPairs

func netFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tap", Usage: "virtio-net on this TAP: NAME: an existing one (e.g. from hlsvmm network setup; left as it is) or a new one that lives as long as the VM"},
		&cli.StringFlag{Name: "mac", Value: defaultMAC, Usage: "the guest's MAC address (with --tap)"},
		&cli.StringFlag{Name: "vhost", Value: vhostAuto, Usage: "datapath (with --tap): auto (vhost-net if /dev/vhost-net opens, else userspace), on (vhost-net or fail), off (userspace)"},
		&cli.IntFlag{Name: "queues", Usage: fmt.Sprintf("virtio-net queue pairs (with --tap), 1 to %d (default: the --vcpus count, at most %d): "+
			"the guest spreads flows over them (ethtool -L changes how many it uses), one TAP queue and one vhost-net worker each; "+
			"more than 1 needs a multi_queue TAP (hlsvmm network setup makes one; with the default, a TAP without multi_queue gets 1)", maxQueues, maxQueues)},
	}
}

// netOptions are the network flags, checked before anything is opened.
type netOptions struct {
	tap       string
	mac       [6]byte
	vhost     string
	queues    int  // queue pairs
	queuesSet bool // --queues given: a TAP that cannot have them is an error
	macvtap   int  // the macvtap's ifindex: open /dev/tapN instead of the TAP by name
	managed   bool // --net bridge/macvtap: hlsvmm puts the TAP where it belongs

	// tuning holds the datapath knobs (run_tuning.go); nil: the defaults.
	tuning *tuningOptions
}

// parseNetFlags checks --tap, --mac, --vhost and --queues; nil options
// mean no network device.
func parseNetFlags(c *cli.Context) (*netOptions, error) {
	name := c.String("tap")
	if name == "" {
		for _, f := range []string{"mac", "vhost", "queues"} {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s needs --tap NAME", f)
			}
		}
		return nil, nil
	}
	return netOptionsFor(c, name)
}

// netOptionsFor checks --mac, --vhost and --queues for a device on the TAP
// name. --vcpus must be checked already.
func netOptionsFor(c *cli.Context, name string) (*netOptions, error) {
	mode := c.String("vhost")
	switch mode {
	case vhostAuto, vhostOn, vhostOff:
	default:
		return nil, fmt.Errorf("--vhost %q: want auto, on or off", mode)
	}
	mac, err := vnet.ParseMAC(c.String("mac"))
	if err != nil {
		return nil, fmt.Errorf("--mac: %w", err)
	}
	o := &netOptions{tap: name, mac: mac, vhost: mode, queues: min(c.Int("vcpus"), maxQueues), queuesSet: c.IsSet("queues")}
	if o.queuesSet {
		if o.queues = c.Int("queues"); o.queues < 1 || o.queues > maxQueues {
			return nil, fmt.Errorf("--queues %d: want 1 to %d", o.queues, maxQueues)
		}
	}
	return o, nil
}

// netDevice is the guest's virtio-net device with the TAP and datapath
// behind it. It owns the TAP and (through the device) the backend.
type netDevice struct {
	dev      *vnet.Device
	tap      *hostnet.Tap
	datapath string // the backends' Name()
	created  bool   // hlsvmm created the TAP: the kernel deletes it when it is closed

	// tuning holds the knobs as applied: no busy-poll on the userspace datapath.
	tuning *tuningOptions
}

// openNet opens (or creates) the TAP with one queue per pair and the
// datapath --vhost asks for, one backend per pair, and builds the device
// (which detaches the TAP queues of pairs 1 and up until the guest asks for
// them). On failure it closes what it opened: a TAP it created disappears
// with its last fd, a pre-existing TAP is left as it was.
func openNet(o *netOptions, log *slog.Logger) (_ *netDevice, err error) {
	tuning := *defaultTuning()
	if o.tuning != nil {
		tuning = *o.tuning
	}
	_, lookErr := stdnet.InterfaceByName(o.tap)
	created := lookErr != nil && o.macvtap == 0
	tap, err := openTap(o, tuning.tapSndBuf, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			tap.Close()
		}
	}()
	metrics := new(vnet.Metrics)
	log = log.With("net", "net0")
	backends, err := openBackends(o, tap, tuning.busyPoll, metrics, log)
	if err != nil {
		return nil, err
	}
	if _, vhostNet := backends[0].(*vhost.NetBackend); !vhostNet && tuning.busyPoll != 0 {
		log.Warn("--busy-poll ignored: the userspace datapath does not busy-poll", "busy_poll_us", tuning.busyPoll/time.Microsecond)
		tuning.busyPoll = 0
	}
	pairs := make([]vnet.Pair, len(backends))
	for i, b := range backends {
		pairs[i] = vnet.Pair{Backend: b, Tap: tap.Queue(i)}
	}
	dev, err := vnet.New(vnet.Config{MAC: o.mac, Pairs: pairs, Metrics: metrics, Logger: log,
		QueueSize: uint16(tuning.queueSize), Tuning: &tuning.tuning})
	if err != nil {
		closeBackends(backends)
		return nil, err
	}
	return &netDevice{dev: dev, tap: tap, datapath: backends[0].Name(), created: created, tuning: &tuning}, nil
}

// openTap opens the TAP (or the macvtap) with o.queues queues and a send
// buffer of sndbuf bytes (0: unlimited). With the default --queues, a TAP
// without multi_queue gets one queue, not an error.
func openTap(o *netOptions, sndbuf int, log *slog.Logger) (*hostnet.Tap, error) {
	open := func(n int) (*hostnet.Tap, error) {
		opts := &hostnet.TapOptions{Queues: n, SndBuf: sndbuf}
		if o.macvtap > 0 {
			return hostnet.OpenMacvtap(o.macvtap, opts)
		}
		return hostnet.OpenTap(o.tap, opts)
	}
	tap, err := open(o.queues)
	if err != nil && o.queues > 1 && !o.queuesSet && errors.Is(err, hostnet.ErrConflict) {
		if tap, err = open(1); err == nil {
			log.Warn("TAP "+o.tap+" is not multi_queue: one queue pair (recreate it with hlsvmm network setup, or pass --queues 1)", "default_queues", o.queues)
		}
	}
	switch {
	case err != nil && o.queuesSet && o.queues > 1:
		return nil, fmt.Errorf("--tap %s with --queues %d: %w", o.tap, o.queues, err)
	case err != nil:
		return nil, fmt.Errorf("--tap %s: %w", o.tap, err)
	}
	return tap, nil
}

// openBackends makes one backend per TAP queue, all vhost-net (one
// /dev/vhost-net descriptor each) or all the userspace datapath, never a
// mix: with --vhost auto the userspace datapath serves every pair when the
// first /dev/vhost-net cannot be used; a later failure is an error. A
// non-zero busyPoll is set on every vhost-net descriptor (--busy-poll).
func openBackends(o *netOptions, tap *hostnet.Tap, busyPoll time.Duration, m *vnet.Metrics, log *slog.Logger) ([]vnet.Backend, error) {
	var bs []vnet.Backend
	if o.vhost != vhostOff {
		for i := range tap.Queues() {
			vh, err := vhost.OpenNet()
			if err != nil && i == 0 && o.vhost == vhostAuto && (errors.Is(err, vhost.ErrNotAvailable) || errors.Is(err, vhost.ErrNotSupported)) {
				log.Warn("vhost-net unavailable, using the userspace datapath", "err", err)
				break
			}
			if err != nil {
				closeBackends(bs)
				if tap.Queues() > 1 {
					return nil, fmt.Errorf("--vhost %s: queue pair %d: %w", o.vhost, i, err)
				}
				return nil, fmt.Errorf("--vhost %s: %w", o.vhost, err)
			}
			if busyPoll != 0 {
				if err := vh.SetBusyPoll(busyPoll); err != nil {
					vh.Close()
					closeBackends(bs)
					return nil, fmt.Errorf("--busy-poll %d: %w", busyPoll/time.Microsecond, err)
				}
			}
			bs = append(bs, vhost.NewNetBackend(vh, tap.Queue(i).Fd()))
		}
	}
	if len(bs) == 0 {
		for i := range tap.Queues() {
			bs = append(bs, vnet.NewUserspace(tap.Queue(i), &vnet.UserspaceOptions{Metrics: m, Logger: log}))
		}
	}
	return bs, nil
}

func closeBackends(bs []vnet.Backend) {
	for _, b := range bs {
		b.Close()
	}
}

// describe is the one line `run` prints about the network device.
func (n *netDevice) describe(o *netOptions) string {
	how := "existing TAP " + o.tap
	if n.created {
		how = "new TAP " + o.tap + " (deleted on exit; attach it: ip link set " + o.tap + " master hlsbr0 up)"
		if o.managed {
			how = "new TAP " + o.tap + " (deleted on exit)"
		}
	}
	pairs := fmt.Sprintf("%d queue pairs", n.tap.Queues())
	if n.tap.Queues() == 1 {
		pairs = "1 queue pair"
	}
	return fmt.Sprintf("net0: virtio-net %s on %s, datapath %s, %s", stdnet.HardwareAddr(o.mac[:]), how, n.datapath, pairs)
}

// Close stops the datapath and closes the backend, then the TAP. Call it
// after the machine (whose transport stops the device) is closed.
func (n *netDevice) Close() error {
	return errors.Join(n.dev.Close(), n.tap.Close())
}
