// Package net is the virtio-net device model (virtio 1.2 §5.1): feature
// offer, configuration space (MAC, link status, MTU) and activation of its
// queue pairs, each served by a Backend — the kernel's vhost-net or the
// userspace datapath in this package — on its own TAP queue.
//
// Queues are numbered rx0, tx0, rx1, tx1, ... as the specification says.
// The device is built for several pairs (multiqueue) but offers one until
// VIRTIO_NET_F_MQ and the control queue exist.
package net

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hlsvmm/hlsvmm/virtio"
)

// Pair is one queue pair's datapath: the backend and its TAP queue.
type Pair struct {
	Backend Backend
	Tap     Tap
}

// Config describes a virtio-net device. Zero fields take defaults.
type Config struct {
	MAC       [6]byte // zero: DefaultMAC
	MTU       uint16  // zero: DefaultMTU
	QueueSize uint16  // largest queue the driver may set up; zero: DefaultQueueSize
	Pairs     []Pair  // exactly one for now
	Metrics   *Metrics
	Logger    *slog.Logger
}

var _ virtio.Device = (*Device)(nil)

// ErrActive is returned by Activate on a device that is already running.
var ErrActive = errors.New("virtio-net device already active")

// Device is a virtio-net device. It owns its backends (Close closes them),
// not the TAPs.
type Device struct {
	pairs    []Pair
	space    [configSpaceSize]byte // read-only after New
	features uint64
	qsize    uint16
	metrics  *Metrics
	log      *slog.Logger

	mu      sync.Mutex
	started int // pairs whose backend is running
	active  bool
}

// New validates cfg and returns the device, not yet active.
func New(cfg Config) (*Device, error) {
	if len(cfg.Pairs) != 1 {
		return nil, fmt.Errorf("virtio-net with %d queue pairs: only 1 is supported until multiqueue lands", len(cfg.Pairs))
	}
	mac := cfg.MAC
	if mac == ([6]byte{}) {
		mac = DefaultMAC()
	}
	if mac[0]&1 != 0 {
		return nil, fmt.Errorf("virtio-net MAC %x is multicast", mac)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < minMTU {
		return nil, fmt.Errorf("virtio-net MTU %d: below the minimum of %d", mtu, minMTU)
	}
	qsize := cfg.QueueSize
	if qsize == 0 {
		qsize = DefaultQueueSize
	}
	if qsize&(qsize-1) != 0 || qsize > 32768 {
		return nil, fmt.Errorf("virtio-net queue size %d: must be a power of two up to 32768", qsize)
	}
	d := &Device{
		pairs:    cfg.Pairs,
		space:    configSpace(mac, mtu, len(cfg.Pairs)),
		features: DeviceFeatures | RingFeatures,
		qsize:    qsize,
		metrics:  cfg.Metrics,
		log:      cfg.Logger,
	}
	if d.metrics == nil {
		d.metrics = new(Metrics)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for i, p := range cfg.Pairs {
		if p.Backend == nil || p.Tap == nil {
			return nil, fmt.Errorf("virtio-net queue pair %d: backend and TAP are both required", i)
		}
		d.features &^= RingFeatures &^ p.Backend.Features()
	}
	if !virtio.HasFeature(d.features, virtio.FeatureVersion1) {
		return nil, fmt.Errorf("virtio-net: backend %s does not support VIRTIO_F_VERSION_1", cfg.Pairs[0].Backend.Name())
	}
	return d, nil
}

// ID is virtio.DeviceNet.
func (d *Device) ID() virtio.DeviceID { return virtio.DeviceNet }

// Features is the offered feature set.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes has an RX and a TX queue per pair.
func (d *Device) QueueMaxSizes() []uint16 {
	s := make([]uint16, 2*len(d.pairs))
	for i := range s {
		s[i] = d.qsize
	}
	return s
}

// ReadConfig reads the configuration space at any offset and width.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	virtio.ReadConfigSpace(d.space[:], offset, data)
}

// WriteConfig ignores the write: every field offered is read-only (the MAC
// is writable only through the control queue, not offered).
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Metrics are the device's counters.
func (d *Device) Metrics() *Metrics { return d.metrics }

// Activate configures the TAP offloads from the accepted features and starts
// every pair's backend. On error nothing is left running.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return ErrActive
	}
	if extra := a.Features &^ d.features; extra != 0 {
		return fmt.Errorf("activate virtio-net: driver accepted features %#x that were not offered", extra)
	}
	if !virtio.HasFeature(a.Features, virtio.FeatureVersion1) {
		return fmt.Errorf("activate virtio-net: driver did not accept VIRTIO_F_VERSION_1")
	}
	if len(a.Queues) != 2*len(d.pairs) {
		return fmt.Errorf("activate virtio-net: %d queues enabled, want %d (rx and tx per pair)", len(a.Queues), 2*len(d.pairs))
	}
	for i, q := range a.Queues {
		if int(q.Index) != i || q.Size > d.qsize || q.Kick == nil || q.Call == nil {
			return fmt.Errorf("activate virtio-net: queue %d (index %d, size %d) is not usable", i, q.Index, q.Size)
		}
	}
	offload := TapOffload(a.Features)
	for i, p := range d.pairs {
		if err := p.Tap.SetOffload(offload); err != nil {
			d.stopLocked()
			return fmt.Errorf("activate virtio-net: set TAP offloads %#x for queue pair %d: %w", offload, i, err)
		}
		pc := PairConfig{
			Features: a.Features,
			Memory:   a.Memory,
			RX:       a.Queues[2*i],
			TX:       a.Queues[2*i+1],
			Broken:   d.brokenFunc(i, a.Broken),
		}
		if err := p.Backend.Start(pc); err != nil {
			d.stopLocked()
			return fmt.Errorf("activate virtio-net: start %s backend for queue pair %d: %w", p.Backend.Name(), i, err)
		}
		d.started = i + 1
	}
	d.active = true
	d.log.Info("virtio-net active", "datapath", d.pairs[0].Backend.Name(), "features", fmt.Sprintf("%#x", a.Features), "tap_offload", fmt.Sprintf("%#x", offload))
	return nil
}

func (d *Device) brokenFunc(pair int, broken func(error)) func(error) {
	return func(err error) {
		err = fmt.Errorf("virtio-net queue pair %d: %w", pair, err)
		d.log.Warn("device needs reset", "err", err)
		if broken != nil {
			broken(err)
		}
	}
}

// Reset stops every backend and returns the device to its initial state.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
	d.active = false
}

func (d *Device) stopLocked() {
	for i := d.started - 1; i >= 0; i-- {
		if err := d.pairs[i].Backend.Stop(); err != nil {
			d.log.Error("stop virtio-net backend", "pair", i, "err", err)
		}
	}
	d.started = 0
}

// Close resets the device and closes its backends. It is idempotent as long
// as the backends' Close is.
func (d *Device) Close() error {
	d.Reset()
	var errs []error
	for i, p := range d.pairs {
		if err := p.Backend.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close virtio-net backend for queue pair %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}
