// Package blk is the virtio-blk device model (virtio 1.2 §5.2): a disk image
// (regular file or block device) served to the guest by one worker
// goroutine per virtqueue, which reads and writes with preadv/pwritev
// straight into and out of guest memory.
//
// Every request is validated before it touches the file: header readable,
// status byte writable at the end, data in the direction the type needs,
// length a multiple of 512, sector range inside the disk without overflow.
// A read-only disk is opened O_RDONLY and offers VIRTIO_BLK_F_RO; a write
// to it is answered VIRTIO_BLK_S_IOERR.
package blk

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/virtio/queue"
)

// Defaults.
const (
	DefaultQueueSize = 256
	MaxQueues        = 16
)

// Options configure a device; nil means defaults.
type Options struct {
	QueueSize uint16       // largest queue the driver may set up; zero: DefaultQueueSize
	Queues    int          // number of request queues (MQ when > 1); zero: 1
	Metrics   *Metrics     // nil: private counters
	Logger    *slog.Logger // nil: discard
}

// ErrActive is returned by Activate on a device that is already running.
var ErrActive = errors.New("virtio-blk device already active")

// Device is a virtio-blk device. It owns its Disk: Close closes it.
type Device struct {
	disk     *Disk
	space    [configSpaceSize]byte
	features uint64
	qsize    uint16
	queues   int
	metrics  *Metrics
	log      *slog.Logger

	mu  sync.Mutex
	run *queue.Workers // nil when not active
}

// New makes a device serving disk and takes ownership of it (also on
// error: the disk is closed).
func New(disk *Disk, opts *Options) (*Device, error) {
	if disk == nil {
		return nil, errors.New("virtio-blk: no disk")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Queues == 0 {
		o.Queues = 1
	}
	if o.QueueSize < 4 || o.QueueSize&(o.QueueSize-1) != 0 || o.QueueSize > queue.MaxSize {
		disk.Close()
		return nil, fmt.Errorf("virtio-blk queue size %d: must be a power of two from 4 to %d", o.QueueSize, queue.MaxSize)
	}
	if o.Queues < 1 || o.Queues > MaxQueues {
		disk.Close()
		return nil, fmt.Errorf("virtio-blk with %d queues: want 1 to %d", o.Queues, MaxQueues)
	}
	d := &Device{
		disk: disk,
		// seg_max: a request needs a header and a status descriptor besides
		// its data (Linux sizes its scatter lists from this).
		space:    configSpace(disk.Sectors(), uint32(o.QueueSize)-2, uint16(o.Queues)),
		features: RingFeatures | 1<<FeatureSegMax | 1<<FeatureBlkSize | 1<<FeatureFlush,
		qsize:    o.QueueSize,
		queues:   o.Queues,
		metrics:  o.Metrics,
		log:      o.Logger,
	}
	if disk.ReadOnly() {
		d.features |= 1 << FeatureRO
	}
	if o.Queues > 1 {
		d.features |= 1 << FeatureMQ
	}
	if d.metrics == nil {
		d.metrics = new(Metrics)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// ID is virtio.DeviceBlock.
func (d *Device) ID() virtio.DeviceID { return virtio.DeviceBlock }

// Features is the offered feature set.
func (d *Device) Features() uint64 { return d.features }

// QueueMaxSizes has one entry per request queue.
func (d *Device) QueueMaxSizes() []uint16 {
	s := make([]uint16, d.queues)
	for i := range s {
		s[i] = d.qsize
	}
	return s
}

// ReadConfig reads the configuration space at any offset and width.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	virtio.ReadConfigSpace(d.space[:], offset, data)
}

// WriteConfig ignores the write: writeback (the only writable field) is
// not offered.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Metrics are the device's counters.
func (d *Device) Metrics() *Metrics { return d.metrics }

// Disk is the served image.
func (d *Device) Disk() *Disk { return d.disk }

// Activate validates every enabled queue and starts one worker per queue.
// On error nothing is left running.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != nil {
		return ErrActive
	}
	if extra := a.Features &^ d.features; extra != 0 {
		return fmt.Errorf("activate virtio-blk: driver accepted features %#x that were not offered", extra)
	}
	if !virtio.HasFeature(a.Features, virtio.FeatureVersion1) {
		return errors.New("activate virtio-blk: driver did not accept VIRTIO_F_VERSION_1")
	}
	if len(a.Queues) == 0 || len(a.Queues) > d.queues {
		return fmt.Errorf("activate virtio-blk: %d queues enabled, want 1 to %d", len(a.Queues), d.queues)
	}
	qs := make([]*queue.Queue, len(a.Queues))
	for i, qc := range a.Queues {
		if int(qc.Index) >= d.queues || qc.Size > d.qsize || qc.Kick == nil || qc.Call == nil {
			return fmt.Errorf("activate virtio-blk: queue %d (index %d, size %d) is not usable", i, qc.Index, qc.Size)
		}
		q, err := queue.New(a.Memory, qc, a.Features)
		if err != nil {
			return fmt.Errorf("activate virtio-blk: set up queue %d: %w", qc.Index, err)
		}
		qs[i] = q
	}
	w := &queue.Workers{Name: "virtio-blk", Log: d.log, Broken: func(q uint16, err error) { d.broken(a, q, err) }}
	counters := queue.Counters{Kicks: &d.metrics.Kicks, Interrupts: &d.metrics.Interrupts}
	for i, q := range qs {
		var data [][]byte // reused by every request of the queue
		w.Serve(q, a.Queues[i], counters, func(c *queue.Chain) (n uint32, err error) {
			n, data, err = d.execute(c, data)
			return n, err
		})
	}
	d.run = w
	d.log.Info("virtio-blk active", "disk", d.disk.Path(), "read_only", d.disk.ReadOnly(),
		"sectors", d.disk.Sectors(), "queues", len(qs), "features", fmt.Sprintf("%#x", a.Features))
	return nil
}

// Reset stops the workers — each finishes at most the request it is
// executing — and returns the device to its initial state. When it returns
// no worker touches guest memory or the eventfds.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run == nil {
		return
	}
	d.run.Stop()
	d.run = nil
}

// Close resets the device and closes the disk. It is idempotent.
func (d *Device) Close() error {
	d.Reset()
	if err := d.disk.Close(); err != nil {
		return fmt.Errorf("close virtio-blk disk %s: %w", d.disk.Path(), err)
	}
	return nil
}

func (d *Device) broken(a virtio.Activation, q uint16, err error) {
	d.metrics.MalformedChains.Add(1)
	err = fmt.Errorf("virtio-blk queue %d: %w", q, err)
	d.log.Warn("device needs reset", "err", err)
	if a.Broken != nil {
		a.Broken(err)
	}
}

// execute parses and performs one request, writes its status byte and
// returns the number of bytes written into the chain (data and status).
// An error means the chain is malformed beyond answering (no status byte).
func (d *Device) execute(c *queue.Chain, data [][]byte) (uint32, [][]byte, error) {
	m := d.metrics
	r, err := parse(c, d.disk.Sectors(), d.disk.ReadOnly(), data)
	data = r.data
	if r.status == nil {
		return 0, data, err
	}
	written := uint32(0)
	if err == nil {
		switch r.typ {
		case TypeIn:
			if err = d.disk.readAt(r.data, r.sector*SectorSize); err == nil {
				m.Reads.Add(1)
				m.ReadBytes.Add(r.len)
				written = uint32(r.len)
			}
		case TypeOut:
			if err = d.disk.writeAt(r.data, r.sector*SectorSize); err == nil {
				m.Writes.Add(1)
				m.WriteBytes.Add(r.len)
			}
		case TypeFlush:
			if err = d.disk.flush(); err == nil {
				m.Flushes.Add(1)
			}
		case TypeGetID:
			id := d.disk.Serial()
			written = uint32(scatterN(id[:], r.data))
			m.GetIDs.Add(1)
		}
	}
	st := statusFor(err)
	switch st {
	case StatusIOErr:
		m.Errors.Add(1)
		d.log.Debug("virtio-blk request failed", "head", c.Head, "err", err)
	case StatusUnsupp:
		m.Unsupported.Add(1)
	}
	r.status[0] = st
	clear(data) // drop references to guest memory
	return written + 1, data, nil
}

// scatterN copies src into segs and returns how many bytes it copied.
func scatterN(src []byte, segs [][]byte) int {
	n := 0
	for _, s := range segs {
		if n == len(src) {
			break
		}
		n += copy(s, src[n:])
	}
	return n
}
