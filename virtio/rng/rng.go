// Package rng is the virtio entropy device (virtio 1.2 §5.4): one request
// queue whose device-writable buffers a worker goroutine fills from the
// host kernel's CSPRNG with getrandom(2), written straight into guest
// memory. It has no feature bits of its own and no configuration space.
package rng

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
	"golang.org/x/sys/unix"
)

// Defaults and limits.
const (
	DefaultQueueSize = 256
	// MaxRequest caps the bytes given for one buffer: the driver asks for
	// a few dozen bytes at a time, and a short fill is legal (the used
	// length says how much was written), so a guest cannot make one request
	// cost more than this.
	MaxRequest = 64 << 10
)

// RingFeatures are the ring features the worker serves through virtio/queue.
const RingFeatures uint64 = 1<<virtio.FeatureVersion1 | 1<<virtio.FeatureEventIdx | 1<<virtio.FeatureIndirectDesc

// ErrDirection is wrapped (with queue.ErrMalformed) when a chain has
// device-readable buffers: the driver must only post writable ones.
var ErrDirection = errors.New("device-readable buffer on the entropy queue")

// ErrActive is returned by Activate on a device that is already running.
var ErrActive = errors.New("virtio-rng device already active")

// Metrics are the device's counters.
type Metrics struct {
	Requests        atomic.Uint64 // buffers filled and returned
	Bytes           atomic.Uint64 // random bytes written to the guest
	Kicks           atomic.Uint64
	Interrupts      atomic.Uint64
	MalformedChains atomic.Uint64 // guest errors that broke the queue
	HostErrors      atomic.Uint64 // getrandom failures
}

// Options configure a device; nil means defaults.
type Options struct {
	QueueSize uint16       // zero: DefaultQueueSize
	Metrics   *Metrics     // nil: private counters
	Logger    *slog.Logger // nil: discard
}

// Device is a virtio-rng device. It holds no descriptors of its own.
type Device struct {
	qsize   uint16
	metrics *Metrics
	log     *slog.Logger

	mu  sync.Mutex
	run *queue.Workers // nil when not active
}

// New makes a device with default options.
func New() *Device {
	return &Device{qsize: DefaultQueueSize, metrics: new(Metrics), log: slog.New(slog.DiscardHandler)}
}

// NewWithOptions makes a device; nil opts means defaults.
func NewWithOptions(opts *Options) (*Device, error) {
	d := &Device{qsize: DefaultQueueSize}
	if opts != nil {
		if opts.QueueSize != 0 {
			d.qsize = opts.QueueSize
		}
		d.metrics, d.log = opts.Metrics, opts.Logger
	}
	if d.qsize&(d.qsize-1) != 0 || d.qsize > queue.MaxSize {
		return nil, fmt.Errorf("virtio-rng queue size %d: must be a power of two up to %d", d.qsize, queue.MaxSize)
	}
	if d.metrics == nil {
		d.metrics = new(Metrics)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// ID is virtio.DeviceEntropy.
func (d *Device) ID() virtio.DeviceID { return virtio.DeviceEntropy }

// Features are the ring features only.
func (d *Device) Features() uint64 { return RingFeatures }

// QueueMaxSizes has the single request queue.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{d.qsize} }

// ReadConfig reads zeros: the device has no configuration space.
func (d *Device) ReadConfig(offset uint64, data []byte) { clear(data) }

// WriteConfig ignores the write.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Metrics are the device's counters.
func (d *Device) Metrics() *Metrics { return d.metrics }

// Activate validates the queue and starts the worker.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != nil {
		return ErrActive
	}
	if extra := a.Features &^ RingFeatures; extra != 0 {
		return fmt.Errorf("activate virtio-rng: driver accepted features %#x that were not offered", extra)
	}
	if !virtio.HasFeature(a.Features, virtio.FeatureVersion1) {
		return errors.New("activate virtio-rng: driver did not accept VIRTIO_F_VERSION_1")
	}
	if len(a.Queues) != 1 {
		return fmt.Errorf("activate virtio-rng: %d queues enabled, want 1", len(a.Queues))
	}
	qc := a.Queues[0]
	if qc.Index != 0 || qc.Size > d.qsize || qc.Kick == nil || qc.Call == nil {
		return fmt.Errorf("activate virtio-rng: queue (index %d, size %d) is not usable", qc.Index, qc.Size)
	}
	q, err := queue.New(a.Memory, qc, a.Features)
	if err != nil {
		return fmt.Errorf("activate virtio-rng: set up queue: %w", err)
	}
	w := &queue.Workers{Name: "virtio-rng", Log: d.log, Broken: func(_ uint16, err error) { d.broken(a, err) }}
	w.Serve(q, qc, queue.Counters{Kicks: &d.metrics.Kicks, Interrupts: &d.metrics.Interrupts}, d.request)
	d.run = w
	return nil
}

// Reset stops the worker; when it returns the worker touches neither guest
// memory nor the eventfds.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run == nil {
		return
	}
	d.run.Stop()
	d.run = nil
}

func (d *Device) broken(a virtio.Activation, err error) {
	d.metrics.MalformedChains.Add(1)
	err = fmt.Errorf("virtio-rng: %w", err)
	d.log.Warn("device needs reset", "err", err)
	if a.Broken != nil {
		a.Broken(err)
	}
}

// request fills one chain's device-writable buffers with random bytes.
func (d *Device) request(c *queue.Chain) (uint32, error) {
	if c.ReadLen > 0 {
		return 0, fmt.Errorf("%w: %w: chain at head %d has %d device-readable bytes", queue.ErrMalformed, ErrDirection, c.Head, c.ReadLen)
	}
	n, err := fill(c.Writable, MaxRequest)
	if err != nil {
		d.metrics.HostErrors.Add(1)
		d.log.Error("virtio-rng: getrandom", "err", err)
	}
	d.metrics.Requests.Add(1)
	d.metrics.Bytes.Add(uint64(n))
	return uint32(n), nil
}

// fill writes up to limit random bytes into segs, in order, and returns how
// many it wrote (all of them unless getrandom failed).
func fill(segs [][]byte, limit int) (int, error) {
	n := 0
	for _, s := range segs {
		s = s[:min(len(s), limit-n)]
		for len(s) > 0 {
			k, err := unix.Getrandom(s, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return n, fmt.Errorf("getrandom: %w", err)
			}
			s = s[k:]
			n += k
		}
		if n == limit {
			break
		}
	}
	return n, nil
}
