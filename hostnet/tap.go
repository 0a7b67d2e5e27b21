package hostnet

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Offload is a set of TUN_F_* offloads for TUNSETOFFLOAD: what the TAP may
// hand us (and the guest) unsegmented or without a checksum. Pass only what
// the guest accepted (VIRTIO_NET_F_GUEST_CSUM/TSO4/TSO6/ECN).
type Offload uint32

const (
	OffloadCsum   Offload = unix.TUN_F_CSUM
	OffloadTSO4   Offload = unix.TUN_F_TSO4
	OffloadTSO6   Offload = unix.TUN_F_TSO6
	OffloadTSOECN Offload = unix.TUN_F_TSO_ECN
)

// VnetHdrSize is the virtio 1.0 net header every frame carries.
const VnetHdrSize = 12

const tunDevice = "/dev/net/tun"

// TapOptions tune OpenTap; nil means one queue and the default buffer.
type TapOptions struct {
	// Queues is the number of queue fds (default 1). More than one needs a
	// multi_queue TAP (which `network setup` creates); one fd per queue
	// pair goes to its own vhost-net instance.
	Queues int
	// SndBuf is TUNSETSNDBUF in bytes; 0 means INT_MAX (QEMU's default,
	// no host-side limit on in-flight frames).
	SndBuf int
}

func (o *TapOptions) queues() int {
	if o == nil || o.Queues <= 0 {
		return 1
	}
	return o.Queues
}

func (o *TapOptions) sndbuf() int {
	if o == nil || o.SndBuf <= 0 {
		return math.MaxInt32
	}
	return o.SndBuf
}

// Tap is an open TAP or macvtap device: one non-blocking fd per queue.
// Every frame read or written starts with a 12-byte virtio-net header. A
// queue joins Go's poller only when hlsvmm first reads, writes or sets a
// deadline on it (the userspace datapath): a queue handed to vhost-net
// never does, or every frame the kernel moves would wake hlsvmm's poller.
// The Tap owns its fds; Close is idempotent.
type Tap struct {
	name string

	fmu    sync.RWMutex // Close takes it exclusively; the fds are valid while it is held
	fds    []int
	files  []atomic.Pointer[os.File] // set on a queue's first I/O; then it owns the fd
	closed bool

	mu       sync.Mutex // guards detached
	detached []bool     // queues detached with TUNSETQUEUE
}

// OpenTap opens the TAP name in the calling thread's network namespace,
// creating it (not persistent: it goes away with Close) when it does not
// exist. An existing TAP (e.g. made by `hlsvmm network setup`) is used as
// it is: multi_queue or not. A TAP another process holds gives ErrTapBusy.
func OpenTap(name string, opts *TapOptions) (*Tap, error) {
	if err := validName("tap", name); err != nil {
		return nil, err
	}
	n := opts.queues()
	base := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	t := &Tap{name: name}
	for i := 0; i < n; i++ {
		fd, err := openTunQueue(name, base|unix.IFF_MULTI_QUEUE)
		if errors.Is(err, unix.EINVAL) && i == 0 && n == 1 {
			// An existing TAP without multi_queue: attach the same way.
			fd, err = openTunQueue(name, base)
		}
		if err != nil {
			t.Close()
			return nil, tapError(name, i, n, err)
		}
		if err := t.add(fd, opts); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// OpenTap is OpenTap inside the host's network namespace.
func (h *Host) OpenTap(name string, opts *TapOptions) (*Tap, error) {
	var t *Tap
	err := h.Do(func() error {
		var err error
		t, err = OpenTap(name, opts)
		return err
	})
	return t, err
}

// OpenMacvtap opens the character device /dev/tap<ifindex> of a macvtap
// (the kernel names it by interface index), one fd per queue.
func OpenMacvtap(ifindex int, opts *TapOptions) (*Tap, error) {
	path := MacvtapDevice(ifindex)
	n := opts.queues()
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if n > 1 {
		flags |= unix.IFF_MULTI_QUEUE
	}
	t := &Tap{name: path}
	for i := 0; i < n; i++ {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Close()
			return nil, classify(fmt.Sprintf("open %s (queue %d)", path, i), err)
		}
		if err := setIff(fd, "", flags); err != nil {
			unix.Close(fd)
			t.Close()
			return nil, classify(fmt.Sprintf("set flags of %s (queue %d)", path, i), err)
		}
		if err := t.add(fd, opts); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// MacvtapDevice is the character device of the macvtap with this index.
func MacvtapDevice(ifindex int) string { return fmt.Sprintf("/dev/tap%d", ifindex) }

func tapError(name string, i, n int, err error) error {
	op := fmt.Sprintf("open TAP %s queue %d of %d", name, i, n)
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%s: %w (%w)", op, ErrTapBusy, err)
	case errors.Is(err, unix.EINVAL) && n > 1:
		return fmt.Errorf("%s: %w: not a multi_queue TAP (recreate it with `hlsvmm network setup`): %w", op, ErrConflict, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%s: %w: %s exists but is not a TAP with these flags: %w", op, ErrConflict, name, err)
	}
	return classify(op, err)
}

// openTunQueue attaches one /dev/net/tun fd to the TAP name (creating it
// if needed) and returns it.
func openTunQueue(name string, flags uint16) (int, error) {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", tunDevice, err)
	}
	if err := setIff(fd, name, flags); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func setIff(fd int, name string, flags uint16) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("ifreq for %q: %w", name, err)
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("TUNSETIFF: %w", err)
	}
	return nil
}

// add configures a queue fd (non-blocking, header size, send buffer) and
// keeps it; on error the fd is closed (by add or by the Tap's Close). The
// fd is made non-blocking only after TUNSETIFF: before, epoll refuses it.
func (t *Tap) add(fd int, opts *TapOptions) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("set %s queue %d non-blocking: %w", t.name, len(t.fds), err)
	}
	t.fds = append(t.fds, fd)
	t.files = append(t.files, atomic.Pointer[os.File]{})
	t.detached = append(t.detached, false)
	i := len(t.fds) - 1
	if err := t.ioctlPtrInt(i, unix.TUNSETVNETHDRSZ, VnetHdrSize); err != nil {
		return fmt.Errorf("set vnet header size of %s queue %d: %w", t.name, i, err)
	}
	if err := t.ioctlPtrInt(i, unix.TUNSETSNDBUF, opts.sndbuf()); err != nil {
		return fmt.Errorf("set send buffer of %s queue %d: %w", t.name, i, err)
	}
	return nil
}

// control runs f with queue i's fd, which stays open meanwhile.
func (t *Tap) control(i int, f func(fd int) error) error {
	t.fmu.RLock()
	defer t.fmu.RUnlock()
	if t.closed {
		return os.ErrClosed
	}
	return f(t.fds[i])
}

func (t *Tap) ioctlPtrInt(i int, req uint, v int) error {
	return t.control(i, func(fd int) error { return unix.IoctlSetPointerInt(fd, req, v) })
}

// Name is the TAP's interface name (for a macvtap: its /dev/tapN path).
func (t *Tap) Name() string { return t.name }

// Queues is the number of queue fds.
func (t *Tap) Queues() int { return len(t.fds) }

// SetOffload sets the offloads (TUNSETOFFLOAD) for the whole device. 0
// turns them all off: every frame then arrives segmented and checksummed.
func (t *Tap) SetOffload(o Offload) error {
	err := t.control(0, func(fd int) error { return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(o)) })
	if err != nil {
		return fmt.Errorf("set offloads %#x on %s: %w", uint32(o), t.name, err)
	}
	return nil
}

// SetQueueEnabled attaches (on) or detaches queue i to or from its device
// (TUNSETQUEUE with IFF_ATTACH_QUEUE or IFF_DETACH_QUEUE; tun and macvtap
// both have it). The kernel steers received frames only to attached
// queues. Every queue starts attached; setting the state a queue already
// has does nothing (the kernel would refuse it with EINVAL). Only a
// multi_queue TAP or a macvtap can detach a queue.
//
// A detached queue stays bound to its device: a read parks (nothing is
// steered to it), ioctls such as TUNSETOFFLOAD work, and vhost-net may keep
// it as a backend.
func (t *Tap) SetQueueEnabled(i int, on bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i < 0 || i >= len(t.fds) {
		return fmt.Errorf("%s has no queue %d", t.name, i)
	}
	if t.detached[i] != on {
		return nil
	}
	flags, what := uint16(unix.IFF_ATTACH_QUEUE), "attach"
	if !on {
		flags, what = unix.IFF_DETACH_QUEUE, "detach"
	}
	err := t.control(i, func(fd int) error {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return err
		}
		ifr.SetUint16(flags)
		return unix.IoctlIfreq(fd, unix.TUNSETQUEUE, ifr)
	})
	if err != nil {
		return fmt.Errorf("%s queue %d of %s (TUNSETQUEUE): %w", what, i, t.name, err)
	}
	t.detached[i] = !on
	return nil
}

// Fd returns queue i's file descriptor for VHOST_NET_SET_BACKEND. The Tap
// keeps ownership: the fd stays valid until Close (vhost-net takes its own
// reference to the file, so closing the Tap afterwards is safe). Do not
// close it, and do not use it for I/O while the Tap is also used.
func (t *Tap) Fd(i int) (int, error) {
	var fd int
	err := t.control(i, func(f int) error { fd = f; return nil })
	if err != nil {
		return -1, fmt.Errorf("fd of %s queue %d: %w", t.name, i, err)
	}
	return fd, nil
}

// ReadQueue reads one frame (virtio-net header first) from queue i,
// waiting in the poller. It honours SetReadDeadline.
func (t *Tap) ReadQueue(i int, b []byte) (int, error) {
	f, err := t.File(i)
	if err != nil {
		return 0, err
	}
	return f.Read(b)
}

// WriteQueue writes one frame (virtio-net header first) to queue i.
func (t *Tap) WriteQueue(i int, b []byte) (int, error) {
	f, err := t.File(i)
	if err != nil {
		return 0, err
	}
	return f.Write(b)
}

// Read reads a frame from queue 0.
func (t *Tap) Read(b []byte) (int, error) { return t.ReadQueue(0, b) }

// Write writes a frame to queue 0.
func (t *Tap) Write(b []byte) (int, error) { return t.WriteQueue(0, b) }

// File returns queue i's file, in Go's poller from now on, e.g. for
// SetReadDeadline. The Tap owns it.
func (t *Tap) File(i int) (*os.File, error) {
	if f := t.files[i].Load(); f != nil {
		return f, nil
	}
	t.fmu.Lock()
	defer t.fmu.Unlock()
	if t.closed {
		return nil, os.ErrClosed
	}
	if f := t.files[i].Load(); f != nil {
		return f, nil
	}
	f := os.NewFile(uintptr(t.fds[i]), fmt.Sprintf("%s queue %d", t.name, i))
	t.files[i].Store(f)
	return f, nil
}

// Close closes every queue fd, waking a parked Read. It is idempotent.
func (t *Tap) Close() error {
	t.fmu.Lock()
	defer t.fmu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for i, fd := range t.fds {
		var err error
		if f := t.files[i].Load(); f != nil {
			err = f.Close()
		} else {
			err = unix.Close(fd)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// createPersistentTap creates the TAP name, multi_queue with vnet headers,
// owned by uid/gid (-1: none), and persistent, in the calling thread's
// namespace. IFF_TUN_EXCL makes it fail with EBUSY if the name exists.
func createPersistentTap(name string, uid, gid int) error {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", tunDevice, err)
	}
	defer unix.Close(fd)
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR | unix.IFF_MULTI_QUEUE | unix.IFF_TUN_EXCL)
	if err := setIff(fd, name, flags); err != nil {
		return err
	}
	if uid >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, uid); err != nil {
			return fmt.Errorf("TUNSETOWNER %d: %w", uid, err)
		}
	}
	if gid >= 0 {
		if err := unix.IoctlSetInt(fd, unix.TUNSETGROUP, gid); err != nil {
			return fmt.Errorf("TUNSETGROUP %d: %w", gid, err)
		}
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return fmt.Errorf("TUNSETPERSIST: %w", err)
	}
	return nil
}
