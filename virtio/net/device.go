// Package net is the virtio-net device model (virtio 1.2 §5.1): feature
// offer, configuration space (MAC, link status, MTU) and activation of its
// queue pairs, each served by a Backend — the kernel's vhost-net or the
// userspace datapath in this package — on its own TAP queue.
//
// Queues are numbered rx0, tx0, rx1, tx1, ... as the specification says.
// With more than one pair the device offers VIRTIO_NET_F_MQ and a control
// queue after the data queues (ctrl.go). The driver uses pair 0 only until
// it sends VQ_PAIRS_SET; the TAP queues of the pairs not in use are
// detached from the TAP (TUNSETQUEUE), so the kernel never steers frames to
// a queue the guest does not poll. Every enabled pair's backend runs from
// activation on (vhost-net keeps all its descriptors, as QEMU does): only
// the TAP queues are attached and detached.
package net

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// MaxPairs is the largest number of queue pairs a device may have.
const MaxPairs = 16

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
	// Pairs are the queue pairs, 1 to MaxPairs. The device owns which TAP
	// queues are attached: New detaches those of pairs 1 and up (the state
	// after a reset), so pass them attached, as a freshly opened TAP has them.
	Pairs   []Pair
	Metrics *Metrics
	Logger  *slog.Logger
	// Tuning chooses the offloads and ring features offered (tuning.go);
	// nil: DefaultTuning.
	Tuning *Tuning
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

	mu      sync.Mutex // Activate, Reset, Close
	active  bool
	started []bool         // pairs whose backend is running
	ctrl    *queue.Workers // the control queue's server while active

	// What the control queue reads and changes, under smu. The control
	// worker takes only smu, so Reset can wait for it while holding mu;
	// smu is taken after mu.
	smu     sync.Mutex
	acked   uint64 // features of the running activation
	enabled []bool // pairs whose two queues the driver enabled
	inUse   int    // pairs in use (ActivePairs)
	rxMode  RXMode
}

// New validates cfg and returns the device, not yet active.
func New(cfg Config) (*Device, error) {
	if len(cfg.Pairs) < 1 || len(cfg.Pairs) > MaxPairs {
		return nil, fmt.Errorf("virtio-net with %d queue pairs: want 1 to %d", len(cfg.Pairs), MaxPairs)
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
	tuning := DefaultTuning()
	if cfg.Tuning != nil {
		tuning = *cfg.Tuning
	}
	if err := tuning.Validate(); err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	d := &Device{
		pairs:    cfg.Pairs,
		space:    configSpace(mac, mtu, len(cfg.Pairs)),
		features: tuning.Features(DeviceFeatures | RingFeatures),
		qsize:    qsize,
		metrics:  cfg.Metrics,
		log:      cfg.Logger,
		started:  make([]bool, len(cfg.Pairs)),
	}
	if len(cfg.Pairs) > 1 {
		d.features |= ControlFeatures
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
	if err := d.attachPairsLocked(1); err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	return d, nil
}

// ID is virtio.DeviceNet.
func (d *Device) ID() virtio.DeviceID { return virtio.DeviceNet }

// Features is the offered feature set.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes has an RX and a TX queue per pair and, with more than one
// pair, the control queue last.
func (d *Device) QueueMaxSizes() []uint16 {
	n := 2 * len(d.pairs)
	if len(d.pairs) > 1 {
		n++
	}
	s := make([]uint16, n)
	for i := range s {
		s[i] = d.qsize
	}
	if len(d.pairs) > 1 {
		s[n-1] = min(ctrlQueueSize, d.qsize)
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

// Activate maps the queues the driver enabled to the pairs and the control
// queue, configures the TAP offloads, starts the backend of every enabled
// pair and the control queue's server. Only pair 0 is in use until the
// driver sends VQ_PAIRS_SET. On error nothing is left running.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active {
		return ErrActive
	}
	if err := d.checkFeatures(a.Features); err != nil {
		return fmt.Errorf("activate virtio-net: %w", err)
	}
	m, err := d.mapQueues(a.Queues, a.Features)
	if err != nil {
		return fmt.Errorf("activate virtio-net: %w", err)
	}
	d.smu.Lock()
	d.acked, d.enabled, d.rxMode = a.Features, m.enabled(), RXMode{}
	d.setInUseLocked(1)
	err = d.attachPairsLocked(1) // as New and Reset left it, unless they failed
	d.smu.Unlock()
	if err != nil {
		d.stopLocked()
		return fmt.Errorf("activate virtio-net: %w", err)
	}
	offload := TapOffload(a.Features)
	for i, p := range d.pairs {
		if i >= len(m.rx) || m.rx[i] == nil {
			continue
		}
		if err := p.Tap.SetOffload(offload); err != nil {
			d.stopLocked()
			return fmt.Errorf("activate virtio-net: set TAP offloads %#x for queue pair %d: %w", offload, i, err)
		}
		pc := PairConfig{
			Features: a.Features,
			Memory:   a.Memory,
			RX:       *m.rx[i],
			TX:       *m.tx[i],
			Broken:   d.brokenFunc(i, a.Broken),
		}
		if err := p.Backend.Start(pc); err != nil {
			d.stopLocked()
			return fmt.Errorf("activate virtio-net: start %s backend for queue pair %d: %w", p.Backend.Name(), i, err)
		}
		d.started[i] = true
	}
	if m.ctrl != nil {
		if err := d.serveCtrl(a, *m.ctrl); err != nil {
			d.stopLocked()
			return fmt.Errorf("activate virtio-net: %w", err)
		}
	}
	d.active = true
	d.log.Info("virtio-net active", "datapath", d.pairs[0].Backend.Name(), "features", fmt.Sprintf("%#x", a.Features),
		"tap_offload", fmt.Sprintf("%#x", offload), "pairs_enabled", m.count(), "max_pairs", len(d.pairs), "control_queue", m.ctrl != nil)
	return nil
}

// checkFeatures checks what the driver accepted: offered bits only,
// VERSION_1, and the control-queue features only with the control queue
// (virtio 1.2 §5.1.3.1).
func (d *Device) checkFeatures(acked uint64) error {
	if extra := acked &^ d.features; extra != 0 {
		return fmt.Errorf("driver accepted features %#x that were not offered", extra)
	}
	if !virtio.HasFeature(acked, virtio.FeatureVersion1) {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1")
	}
	if acked&ControlFeatures != 0 && !virtio.HasFeature(acked, FeatureCtrlVQ) {
		return fmt.Errorf("driver accepted features %#x without VIRTIO_NET_F_CTRL_VQ", acked&ControlFeatures)
	}
	return nil
}

// queueMap says where the queues the driver enabled go.
type queueMap struct {
	rx, tx []*virtio.QueueConfig // per usable pair; nil: not enabled
	ctrl   *virtio.QueueConfig   // nil: no control queue
}

// mapQueues places the enabled queues under the negotiated features
// (virtio 1.2 §5.1.2): with VIRTIO_NET_F_MQ every pair is usable and the
// control queue is queue 2*max_virtqueue_pairs; without it only pair 0 is,
// and the control queue (VIRTIO_NET_F_CTRL_VQ) is queue 2. The driver may
// enable fewer queues than offered, but pair 0 entirely and no half pair.
// Other queues it enabled are not served.
func (d *Device) mapQueues(qs []virtio.QueueConfig, acked uint64) (queueMap, error) {
	usable := 1
	if virtio.HasFeature(acked, FeatureMQ) {
		usable = len(d.pairs)
	}
	ctrl := -1
	if virtio.HasFeature(acked, FeatureCtrlVQ) {
		ctrl = 2 * usable
	}
	maxSizes := d.QueueMaxSizes()
	m := queueMap{rx: make([]*virtio.QueueConfig, usable), tx: make([]*virtio.QueueConfig, usable)}
	prev := -1
	for i := range qs {
		q := &qs[i]
		idx := int(q.Index)
		if idx <= prev || idx >= len(maxSizes) || q.Size > maxSizes[idx] || q.Kick == nil || q.Call == nil {
			return m, fmt.Errorf("queue %d (index %d, size %d) is not usable", i, q.Index, q.Size)
		}
		prev = idx
		switch {
		case idx < 2*usable && idx%2 == 0:
			m.rx[idx/2] = q
		case idx < 2*usable:
			m.tx[idx/2] = q
		case idx == ctrl:
			m.ctrl = q
		default:
			d.log.Warn("virtio-net: the driver enabled a queue the negotiated features leave unused; not serving it", "queue", idx)
		}
	}
	for i := range usable {
		if (m.rx[i] == nil) != (m.tx[i] == nil) {
			return m, fmt.Errorf("queue pair %d: the driver enabled one of its two queues", i)
		}
	}
	if m.rx[0] == nil {
		return m, errors.New("the driver did not enable queue pair 0")
	}
	return m, nil
}

// enabled has one entry per device pair: whether the driver enabled it.
func (m queueMap) enabled() []bool {
	e := make([]bool, len(m.rx))
	for i, q := range m.rx {
		e[i] = q != nil
	}
	return e
}

func (m queueMap) count() int {
	n := 0
	for _, q := range m.rx {
		if q != nil {
			n++
		}
	}
	return n
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

// Reset stops the control queue's server and every backend, detaches the
// TAP queues of pairs 1 and up and returns the device to its initial state.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
	d.active = false
}

func (d *Device) stopLocked() {
	if d.ctrl != nil {
		d.ctrl.Stop()
		d.ctrl = nil
	}
	for i := len(d.pairs) - 1; i >= 0; i-- {
		if !d.started[i] {
			continue
		}
		if err := d.pairs[i].Backend.Stop(); err != nil {
			d.log.Error("stop virtio-net backend", "pair", i, "err", err)
		}
		d.started[i] = false
	}
	d.smu.Lock()
	defer d.smu.Unlock()
	if err := d.attachPairsLocked(1); err != nil {
		d.log.Error("virtio-net: detach TAP queues on reset", "err", err)
	}
	d.acked, d.enabled, d.rxMode = 0, nil, RXMode{}
	d.setInUseLocked(0)
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
