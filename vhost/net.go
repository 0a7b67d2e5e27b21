package vhost

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// Feature bits (bit numbers) vhost-net deals in, from virtio_config.h,
// virtio_ring.h and virtio_net.h.
const (
	featureMrgRxbuf     = 15 // VIRTIO_NET_F_MRG_RXBUF
	featureAnyLayout    = 27 // VIRTIO_F_ANY_LAYOUT, the same bit as VHOST_NET_F_VIRTIO_NET_HDR
	featureRingReset    = 40 // VIRTIO_F_RING_RESET
	transportFirst      = 24 // virtio 1.2 §6: bits 24..40 are transport/ring features
	transportLast       = 40
	maxQueueSize        = 32768 // virtio 1.2 §2.7: split queue size limit
	descAlign, descSize = 16, 16
	availAlign          = 2
	usedAlign           = 4
)

// requiredFeatures must be offered by vhost-net for hlsvmm to use it.
const requiredFeatures = 1 << virtio.FeatureVersion1

// internalFeatures are vhost's own bits or bits hlsvmm never hands to
// vhost: they are neither offered to the guest through the backend nor set
// with SET_FEATURES. VHOST_NET_F_VIRTIO_NET_HDR (bit 27) would make vhost add
// and strip the virtio-net header itself, but the TAP does that
// (IFF_VNET_HDR, header size 12). No IOTLB (ACCESS_PLATFORM), no dirty log
// (LOG_ALL), no per-queue reset (RING_RESET) either.
const internalFeatures = 1<<uapi.VHOST_F_LOG_ALL | 1<<uapi.VHOST_NET_F_VIRTIO_NET_HDR |
	1<<virtio.FeatureAccessPlatform | 1<<featureRingReset

// servedFeatures are the bits that change how vhost-net walks the rings or
// lays out buffers: if the driver accepted one, vhost-net must know it.
// Everything else the driver accepts (offloads, MAC, status, MTU) is between
// the device model, the guest and the TAP.
func servedFeatures() uint64 {
	var m uint64
	for b := transportFirst; b <= transportLast; b++ {
		m |= 1 << b
	}
	m |= 1 << featureMrgRxbuf
	return m &^ internalFeatures &^ (1 << featureAnyLayout)
}

// ErrNotSupported is matched (errors.Is) by a *NotSupportedError.
var ErrNotSupported = errors.New("vhost-net lacks required features")

// NotSupportedError says /dev/vhost-net opened but does not offer a feature
// hlsvmm needs.
type NotSupportedError struct {
	Offered uint64 // what VHOST_GET_FEATURES returned
	Missing uint64 // required bits not among them
}

func (e *NotSupportedError) Error() string {
	return fmt.Sprintf("%s: %s (offered %#x); hlsvmm needs the vhost_net of Linux 4.0 or later: "+
		"upgrade the host kernel or run with --vhost=off", ErrNotSupported, featureNames(e.Missing), e.Offered)
}

// Is makes errors.Is(err, ErrNotSupported) true.
func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }

func featureNames(f uint64) string {
	var names []string
	for f != 0 {
		b := bits.TrailingZeros64(f)
		f &^= 1 << b
		switch b {
		case virtio.FeatureVersion1:
			names = append(names, "VIRTIO_F_VERSION_1")
		default:
			names = append(names, fmt.Sprintf("feature bit %d", b))
		}
	}
	return strings.Join(names, ", ")
}

// errClosed is returned for any use of a closed Net.
var errClosed = fmt.Errorf("vhost-net: %w", os.ErrClosed)

// Vring indexes within one vhost-net descriptor.
const (
	VringRX = 0
	VringTX = 1
)

var vringNames = [2]string{"rx", "tx"}

// Net is one /dev/vhost-net descriptor serving one virtio-net queue pair
// (vring 0 receive, vring 1 transmit). It owns its Device. Methods are safe
// for concurrent use.
type Net struct {
	mu       sync.Mutex
	dev      Device // nil after Close
	offered  uint64 // VHOST_GET_FEATURES
	busyPoll uint32 // µs, set by SetBusyPoll
	running  bool
	queues   [2]uint16 // guest queue numbers while running, for messages
	bases    [2]uint16 // avail indexes saved by the last Stop
}

// OpenNet opens /dev/vhost-net, becomes its owner and checks its features.
// If the device cannot be opened the error wraps ErrNotAvailable; if it
// lacks a required feature, it is a *NotSupportedError (ErrNotSupported).
func OpenNet() (*Net, error) {
	d, err := openKernel(DevicePath)
	if err != nil {
		return nil, err
	}
	return NewNet(d)
}

// NewNet takes ownership of d (closing it if NewNet fails), issues
// VHOST_SET_OWNER and VHOST_GET_FEATURES and checks the required features.
// OpenNet uses it with the kernel's device, tests with vhosttest.Fake.
func NewNet(d Device) (*Net, error) {
	if err := d.SetOwner(); err != nil {
		d.Close()
		return nil, fmt.Errorf("set vhost-net owner: %w", err)
	}
	offered, err := d.GetFeatures()
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("get vhost-net features: %w", err)
	}
	if missing := requiredFeatures &^ offered; missing != 0 {
		d.Close()
		return nil, &NotSupportedError{Offered: offered, Missing: missing}
	}
	return &Net{dev: d, offered: offered}, nil
}

// Features returns the feature bits the kernel offered (VHOST_GET_FEATURES),
// vhost's own bits included.
func (n *Net) Features() uint64 { return n.offered }

// ErrBusyPollNotSupported is wrapped by SetBusyPoll's and Start's error when
// the kernel does not know VHOST_SET_VRING_BUSYLOOP_TIMEOUT.
var ErrBusyPollNotSupported = errors.New("vhost busy-poll: the host kernel lacks VHOST_SET_VRING_BUSYLOOP_TIMEOUT " +
	"(Linux 4.6 or later has it); upgrade the host kernel or turn busy-polling off")

// MaxBusyPoll is the longest busy-poll timeout the kernel can be given (µs
// in 32 bits).
const MaxBusyPoll = time.Duration(1<<32-1) * time.Microsecond

// SetBusyPoll makes the kernel's vhost worker keep polling each vring and
// the TAP for up to d after its last work before it goes to sleep
// (VHOST_SET_VRING_BUSYLOOP_TIMEOUT on both vrings). It trades host CPU,
// burnt while the worker spins, for latency and fewer guest kicks and
// host wakeups. Zero turns polling off (the kernel's default). d must be
// whole microseconds up to MaxBusyPoll.
//
// The timeout is set right away, so a kernel without it fails here, before
// any guest runs (the error wraps ErrBusyPollNotSupported and the errno),
// and again by every Start, after each vring's addresses and before its
// backend.
func (n *Net) SetBusyPoll(d time.Duration) error {
	usecs, err := busyPollUsecs(d)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dev == nil {
		return errClosed
	}
	for i := range uint32(2) {
		if err := setBusyloop(n.dev, i, usecs); err != nil {
			if i > 0 { // put vring 0 back as it was
				err = errors.Join(err, setBusyloop(n.dev, 0, n.busyPoll))
			}
			return err
		}
	}
	n.busyPoll = usecs
	return nil
}

// busyPollUsecs checks a busy-poll timeout and converts it to µs.
func busyPollUsecs(d time.Duration) (uint32, error) {
	if d < 0 || d > MaxBusyPoll || d%time.Microsecond != 0 {
		return 0, fmt.Errorf("vhost busy-poll timeout %v: want whole microseconds from 0 to %v", d, MaxBusyPoll)
	}
	return uint32(d / time.Microsecond), nil
}

func setBusyloop(d Device, i, usecs uint32) error {
	err := d.SetVringBusyloopTimeout(i, usecs)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		err = fmt.Errorf("%w: %w", ErrBusyPollNotSupported, err)
	}
	if err != nil {
		return fmt.Errorf("set vring busy-poll timeout %dµs for %s vring: %w", usecs, vringNames[i], err)
	}
	return nil
}

// Config is what Start hands to the kernel.
type Config struct {
	// Features are the bits the driver accepted. Start sends the subset
	// vhost-net offers, without vhost's internal bits.
	Features uint64
	// Memory is guest RAM; it must stay mapped until Stop or Close.
	Memory *memory.Memory
	// RX and TX are the pair's receive and transmit queues.
	RX, TX virtio.QueueConfig
	// Tap is the TAP (or raw packet socket) descriptor, borrowed: the
	// kernel takes its own reference.
	Tap int
	// Resume starts the rings at the avail indexes saved by the last Stop
	// instead of 0. Only for pausing a device whose driver did not reset;
	// after a driver reset the rings start over at 0.
	Resume bool
}

// vring is one ring's worth of Start arguments, validated.
type vring struct {
	q    virtio.QueueConfig
	addr VringAddr
	base uint32
}

// Start hands the queue pair to the kernel, in the order the kernel
// requires: features, memory table, then for each vring its size, base,
// ring addresses, busy-poll timeout (if SetBusyPoll set one), kick and call
// eventfds, and last the backend of each vring. Everything is validated before the first ioctl. If a step fails,
// what was already attached is detached again and the error names the
// step and queue and wraps the errno.
func (n *Net) Start(c Config) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dev == nil {
		return errClosed
	}
	if n.running {
		return errors.New("start vhost-net: already started; stop it first")
	}
	if c.Memory == nil {
		return errors.New("start vhost-net: no guest memory")
	}
	if c.Tap < 0 {
		return fmt.Errorf("start vhost-net: invalid TAP descriptor %d", c.Tap)
	}
	if !virtio.HasFeature(c.Features, virtio.FeatureVersion1) {
		return errors.New("start vhost-net: the driver did not accept VIRTIO_F_VERSION_1")
	}
	if extra := c.Features & servedFeatures() &^ n.offered; extra != 0 {
		return fmt.Errorf("start vhost-net: the driver accepted features vhost-net does not offer: %#x", extra)
	}
	features := c.Features & n.offered &^ internalFeatures
	regions := memTable(c.Memory)
	var rings [2]vring
	for i, q := range [2]virtio.QueueConfig{c.RX, c.TX} {
		addr, err := ringAddr(c.Memory, q)
		if err != nil {
			return fmt.Errorf("start vhost-net %s queue %d: %w", vringNames[i], q.Index, err)
		}
		rings[i] = vring{q: q, addr: addr}
		if c.Resume {
			rings[i].base = uint32(n.bases[i])
		}
	}

	d := n.dev
	if err := d.SetFeatures(features); err != nil {
		return fmt.Errorf("set vhost-net features %#x: %w", features, err)
	}
	if err := d.SetMemTable(regions); err != nil {
		return fmt.Errorf("set vhost-net memory table (%d regions): %w", len(regions), err)
	}
	var undo undoList
	for i, r := range rings {
		if err := n.setVring(uint32(i), r, &undo); err != nil {
			return errors.Join(err, undo.run())
		}
	}
	for i, r := range rings {
		if err := d.SetBackend(uint32(i), c.Tap); err != nil {
			return errors.Join(fmt.Errorf("set vhost-net backend for queue %d: %w", r.q.Index, err), undo.run())
		}
		undo.add(uint32(i), "backend", d.SetBackend)
	}
	n.running = true
	n.queues = [2]uint16{c.RX.Index, c.TX.Index}
	return nil
}

// setVring issues the per-vring steps before the backend.
func (n *Net) setVring(i uint32, r vring, undo *undoList) error {
	d, q := n.dev, r.q
	if err := d.SetVringNum(i, uint32(q.Size)); err != nil {
		return fmt.Errorf("set vring num %d for queue %d: %w", q.Size, q.Index, err)
	}
	if err := d.SetVringBase(i, r.base); err != nil {
		return fmt.Errorf("set vring base %d for queue %d: %w", r.base, q.Index, err)
	}
	if err := d.SetVringAddr(i, r.addr); err != nil {
		return fmt.Errorf("set vring addr for queue %d: %w", q.Index, err)
	}
	if n.busyPoll != 0 {
		if err := setBusyloop(d, i, n.busyPoll); err != nil {
			return fmt.Errorf("queue %d: %w", q.Index, err)
		}
	}
	if err := d.SetVringKick(i, q.Kick.Fd()); err != nil {
		return fmt.Errorf("set vring kick for queue %d: %w", q.Index, err)
	}
	undo.add(i, "kick", d.SetVringKick)
	if err := d.SetVringCall(i, q.Call.Fd()); err != nil {
		return fmt.Errorf("set vring call for queue %d: %w", q.Index, err)
	}
	undo.add(i, "call", d.SetVringCall)
	return nil
}

// undoList detaches, newest first, the files a failed Start attached.
type undoList []undoStep

type undoStep struct {
	vring  uint32
	what   string // "kick", "call", "backend"
	detach func(i uint32, fd int) error
}

func (u *undoList) add(i uint32, what string, detach func(uint32, int) error) {
	*u = append(*u, undoStep{i, what, detach})
}

func (u undoList) run() error {
	var errs []error
	for k := len(u) - 1; k >= 0; k-- {
		if err := u[k].detach(u[k].vring, uapi.VHOST_FILE_UNBIND); err != nil {
			errs = append(errs, fmt.Errorf("undo: detach %s of vring %d: %w", u[k].what, u[k].vring, err))
		}
	}
	return errors.Join(errs...)
}

// Stop detaches the TAP from both vrings (after which the kernel touches
// neither the rings nor guest memory), saves each vring's avail index and
// detaches the kick and call eventfds. The descriptor stays open and owned,
// so Start may follow (driver reset and reload). Stopping a Net that is not
// running does nothing.
func (n *Net) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dev == nil {
		return errClosed
	}
	return n.stop()
}

func (n *Net) stop() error {
	if !n.running {
		return nil
	}
	n.running = false
	d := n.dev
	var errs []error
	for i := range uint32(2) {
		q := n.queues[i]
		if err := d.SetBackend(i, uapi.VHOST_FILE_UNBIND); err != nil {
			errs = append(errs, fmt.Errorf("detach vhost-net backend from queue %d: %w", q, err))
		}
		base, err := d.GetVringBase(i)
		if err != nil {
			errs = append(errs, fmt.Errorf("get vring base for queue %d: %w", q, err))
		} else {
			n.bases[i] = uint16(base)
		}
		if err := d.SetVringKick(i, uapi.VHOST_FILE_UNBIND); err != nil {
			errs = append(errs, fmt.Errorf("detach vring kick for queue %d: %w", q, err))
		}
		if err := d.SetVringCall(i, uapi.VHOST_FILE_UNBIND); err != nil {
			errs = append(errs, fmt.Errorf("detach vring call for queue %d: %w", q, err))
		}
	}
	return errors.Join(errs...)
}

// Bases returns the avail indexes of the RX and TX vrings saved by the last
// Stop (zero before any).
func (n *Net) Bases() (rx, tx uint16) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bases[VringRX], n.bases[VringTX]
}

// Close stops the pair if it is running and closes the descriptor. It is
// idempotent.
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dev == nil {
		return nil
	}
	err := n.stop()
	err = errors.Join(err, n.dev.Close())
	n.dev = nil
	return err
}

// memTable turns guest RAM into VHOST_SET_MEM_TABLE entries.
func memTable(m *memory.Memory) []MemRegion {
	rs := m.Regions()
	out := make([]MemRegion, 0, len(rs))
	for _, r := range rs {
		out = append(out, MemRegion{GuestPhys: r.GuestPhys, Size: uint64(len(r.Host)), UserAddr: hostAddr(r.Host)})
	}
	return out
}

// ringAddr validates a queue as the kernel will use it and returns the host
// addresses of its rings. Each ring must lie inside guest RAM (checked
// through memory.Slice, the one place guest addresses become host memory);
// sizes include the event-index words whether or not EVENT_IDX was accepted.
func ringAddr(m *memory.Memory, q virtio.QueueConfig) (VringAddr, error) {
	n := uint64(q.Size)
	if n == 0 || n > maxQueueSize || n&(n-1) != 0 {
		return VringAddr{}, fmt.Errorf("queue size %d: want a power of two up to %d", n, maxQueueSize)
	}
	if q.Kick == nil || q.Call == nil {
		return VringAddr{}, errors.New("missing kick or call eventfd")
	}
	parts := []struct {
		name  string
		gpa   uint64
		size  uint64
		align uint64
	}{
		{"descriptor table", q.Desc, descSize * n, descAlign},
		{"driver ring", q.Driver, 6 + 2*n, availAlign},
		{"device ring", q.Device, 6 + 8*n, usedAlign},
	}
	var host [3]uint64
	for k, p := range parts {
		if p.gpa%p.align != 0 {
			return VringAddr{}, fmt.Errorf("%s at %#x: not %d-byte aligned", p.name, p.gpa, p.align)
		}
		b, err := m.Slice(p.gpa, p.size)
		if err != nil {
			return VringAddr{}, fmt.Errorf("%s: %w", p.name, err)
		}
		host[k] = hostAddr(b)
	}
	return VringAddr{Desc: host[0], Avail: host[1], Used: host[2]}, nil
}

// hostAddr is the host virtual address of b's first byte; b is not empty.
func hostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
