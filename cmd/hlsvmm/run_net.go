package main

import (
	"errors"
	"fmt"
	"log/slog"
	stdnet "net"

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

func netFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tap", Usage: "virtio-net on this TAP: NAME: an existing one (e.g. from hlsvmm network setup; left as it is) or a new one that lives as long as the VM"},
		&cli.StringFlag{Name: "mac", Value: defaultMAC, Usage: "the guest's MAC address (with --tap)"},
		&cli.StringFlag{Name: "vhost", Value: vhostAuto, Usage: "datapath (with --tap): auto (vhost-net if /dev/vhost-net opens, else userspace), on (vhost-net or fail), off (userspace)"},
	}
}

// netOptions are the network flags, checked before anything is opened.
type netOptions struct {
	tap     string
	mac     [6]byte
	vhost   string
	macvtap int  // the macvtap's ifindex: open /dev/tapN instead of the TAP by name
	managed bool // --net bridge/macvtap: hlsvmm puts the TAP where it belongs
}

// parseNetFlags checks --tap, --mac and --vhost; nil options mean no
// network device.
func parseNetFlags(c *cli.Context) (*netOptions, error) {
	name := c.String("tap")
	if name == "" {
		for _, f := range []string{"mac", "vhost"} {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s needs --tap NAME", f)
			}
		}
		return nil, nil
	}
	return netOptionsFor(c, name)
}

// netOptionsFor checks --mac and --vhost for a device on the TAP name.
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
	return &netOptions{tap: name, mac: mac, vhost: mode}, nil
}

// netDevice is the guest's virtio-net device with the TAP and datapath
// behind it. It owns the TAP and (through the device) the backend.
type netDevice struct {
	dev      *vnet.Device
	tap      *hostnet.Tap
	datapath string // the backend's Name()
	created  bool   // hlsvmm created the TAP: the kernel deletes it when it is closed
}

// openNet opens (or creates) the TAP and the datapath --vhost asks for and
// builds the device. On failure it closes what it opened: a TAP it created
// disappears with its last fd, a pre-existing TAP is left as it was.
func openNet(o *netOptions, log *slog.Logger) (_ *netDevice, err error) {
	_, lookErr := stdnet.InterfaceByName(o.tap)
	created := lookErr != nil
	var tap *hostnet.Tap
	if o.macvtap > 0 {
		created = false
		tap, err = hostnet.OpenMacvtap(o.macvtap, nil)
	} else {
		tap, err = hostnet.OpenTap(o.tap, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("--tap %s: %w", o.tap, err)
	}
	defer func() {
		if err != nil {
			tap.Close()
		}
	}()
	q := tap.Queue(0)
	var backend vnet.Backend
	metrics := new(vnet.Metrics)
	if o.vhost != vhostOff {
		vh, verr := vhost.OpenNet()
		switch {
		case verr == nil:
			backend = vhost.NewNetBackend(vh, q.Fd())
		case o.vhost == vhostAuto && (errors.Is(verr, vhost.ErrNotAvailable) || errors.Is(verr, vhost.ErrNotSupported)):
			log.Warn("vhost-net unavailable, using the userspace datapath", "err", verr)
		default:
			return nil, fmt.Errorf("--vhost %s: %w", o.vhost, verr)
		}
	}
	if backend == nil {
		backend = vnet.NewUserspace(q, &vnet.UserspaceOptions{Metrics: metrics, Logger: log.With("net", "net0")})
	}
	dev, err := vnet.New(vnet.Config{
		MAC:     o.mac,
		Pairs:   []vnet.Pair{{Backend: backend, Tap: q}},
		Metrics: metrics,
		Logger:  log.With("net", "net0"),
	})
	if err != nil {
		backend.Close()
		return nil, err
	}
	return &netDevice{dev: dev, tap: tap, datapath: backend.Name(), created: created}, nil
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
	return fmt.Sprintf("net0: virtio-net %s on %s, datapath %s", stdnet.HardwareAddr(o.mac[:]), how, n.datapath)
}

// Close stops the datapath and closes the backend, then the TAP. Call it
// after the machine (whose transport stops the device) is closed.
func (n *netDevice) Close() error {
	return errors.Join(n.dev.Close(), n.tap.Close())
}
