// Package ninep is the virtio-9p device ("9P transport", virtio
// device ID 9; the layout is QEMU's and Linux's 9p/trans_virtio): one request queue on which every descriptor chain carries
// one 9P2000.L T-message in its device-readable part and receives the
// R-message in its device-writable part, served by the 9P server of
// github.com/hugelgupf/p9 over a read-only, descriptor-based view of a host
// directory (fs.go).
//
// The library serves a byte stream (Server.Handle on an io.ReadCloser and
// an io.WriteCloser), not single messages, so session.go adapts: see there.
package ninep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/virtio"
)

// FeatureMountTag is VIRTIO_9P_MOUNT_TAG: the config space holds the tag.
const FeatureMountTag = 0

// RingFeatures are the ring features the request queue implements.
const RingFeatures = 1<<virtio.FeatureVersion1 | 1<<virtio.FeatureIndirectDesc | 1<<virtio.FeatureEventIdx

// Defaults.
const (
	// DefaultQueueSize is the request queue's largest size (QEMU offers
	// 128 too). It also bounds the requests in flight.
	DefaultQueueSize = 128
	// DefaultMaxMessageSize caps the msize the guest may negotiate: Linux
	// asks for its mount option (512 KiB on NixOS microVMs) and the
	// largest reply must fit the buffers it posts.
	DefaultMaxMessageSize = 512 << 10
	// minMessageSize is the smallest cap accepted: a Tversion needs room.
	minMessageSize = 4096
)

// Config describes a virtio-9p device. Zero fields take defaults.
type Config struct {
	Share          Share
	QueueSize      uint16
	MaxMessageSize uint32
	Metrics        *Metrics // nil: private counters
	Logger         *slog.Logger
}

// ErrActive is returned by Activate on a device that is already running.
var ErrActive = errors.New("virtio-9p device already active")

// Device is a virtio-9p device exporting one host directory. It owns the
// share's root directory descriptor (Close closes it).
type Device struct {
	share   Share
	space   []byte // config space: le16 tag_len, tag
	qsize   uint16
	maxSize uint32
	metrics *Metrics
	log     *slog.Logger
	server  *p9.Server

	mu     sync.Mutex
	root   int // O_PATH directory, -1 after Close
	active *session
}

// New opens the share's directory and returns the device, not yet active.
// Read-write shares are refused for now: only read-only serving exists.
func New(cfg Config) (*Device, error) {
	s := cfg.Share
	if err := validTag(s.Tag); err != nil {
		return nil, fmt.Errorf("virtio-9p share %s: %w", s, err)
	}
	if !s.ReadOnly {
		return nil, fmt.Errorf("virtio-9p share %s: read-write shares are not supported yet; add ,ro", s)
	}
	qsize := cfg.QueueSize
	if qsize == 0 {
		qsize = DefaultQueueSize
	}
	if qsize&(qsize-1) != 0 || qsize > 32768 {
		return nil, fmt.Errorf("virtio-9p queue size %d: must be a power of two up to 32768", qsize)
	}
	maxSize := cfg.MaxMessageSize
	if maxSize == 0 {
		maxSize = DefaultMaxMessageSize
	}
	if maxSize < minMessageSize || maxSize > 4<<20 {
		return nil, fmt.Errorf("virtio-9p maximum message size %d: want %d to %d", maxSize, minMessageSize, 4<<20)
	}
	path, err := filepath.Abs(s.Path)
	if err != nil {
		return nil, fmt.Errorf("virtio-9p share %s: %w", s, err)
	}
	root, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("virtio-9p share %s: open directory %s: %w", s, path, err)
	}
	space := make([]byte, 2+len(s.Tag))
	binary.LittleEndian.PutUint16(space, uint16(len(s.Tag)))
	copy(space[2:], s.Tag)
	d := &Device{
		share:   s,
		space:   space,
		qsize:   qsize,
		maxSize: maxSize,
		metrics: cfg.Metrics,
		log:     cfg.Logger,
		root:    root,
	}
	if d.metrics == nil {
		d.metrics = new(Metrics)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.server = p9.NewServer(&attacher{root: root})
	return d, nil
}

// ID is virtio.Device9P.
func (d *Device) ID() virtio.DeviceID { return virtio.Device9P }

// Features offers the mount tag and the ring features.
func (d *Device) Features() uint64 { return 1<<FeatureMountTag | RingFeatures }

// QueueMaxSizes has the one request queue.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{d.qsize} }

// ReadConfig reads the tag length and tag at any offset and width.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	virtio.ReadConfigSpace(d.space, offset, data)
}

// WriteConfig ignores the write: the config space is read-only.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Share is the exported directory.
func (d *Device) Share() Share { return d.share }

// Metrics are the device's counters.
func (d *Device) Metrics() *Metrics { return d.metrics }

// Activate starts serving the request queue with a fresh 9P session.
func (d *Device) Activate(a virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.root < 0 {
		return errors.New("activate virtio-9p: device closed")
	}
	if d.active != nil {
		return ErrActive
	}
	if extra := a.Features &^ d.Features(); extra != 0 {
		return fmt.Errorf("activate virtio-9p: driver accepted features %#x that were not offered", extra)
	}
	if !virtio.HasFeature(a.Features, virtio.FeatureVersion1) {
		return errors.New("activate virtio-9p: driver did not accept VIRTIO_F_VERSION_1")
	}
	if len(a.Queues) != 1 {
		return fmt.Errorf("activate virtio-9p: %d queues enabled, want 1", len(a.Queues))
	}
	q := a.Queues[0]
	if q.Index != 0 || q.Size > d.qsize || q.Kick == nil || q.Call == nil {
		return fmt.Errorf("activate virtio-9p: queue 0 (index %d, size %d) is not usable", q.Index, q.Size)
	}
	s, err := startSession(d, a)
	if err != nil {
		return fmt.Errorf("activate virtio-9p: %w", err)
	}
	d.active = s
	d.log.Info("virtio-9p active", "tag", d.share.Tag, "path", d.share.Path, "features", fmt.Sprintf("%#x", a.Features))
	return nil
}

// Reset ends the 9P session: no more guest memory is touched when it
// returns, and every fid's descriptors are closed.
func (d *Device) Reset() {
	d.mu.Lock()
	s := d.active
	d.active = nil
	d.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// Close resets the device and closes the share's root. It is idempotent.
func (d *Device) Close() error {
	d.Reset()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.root < 0 {
		return nil
	}
	err := unix.Close(d.root)
	d.root = -1
	if err != nil {
		return fmt.Errorf("close virtio-9p share %s: %w", d.share, err)
	}
	return nil
}
