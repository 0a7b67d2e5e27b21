// Package vhosttest provides Fake, a vhost.Device that behaves like the
// kernel's vhost-net (drivers/vhost/vhost.c and net.c) without a kernel:
// it records every call and returns the errno the kernel would, so the
// order and error handling of code above vhost.Device is tested anywhere.
package vhosttest

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/vhost"
)

// NetFeatures is what the vhost-net of Linux 6.x offers (VHOST_NET_FEATURES):
// NOTIFY_ON_EMPTY, INDIRECT_DESC, EVENT_IDX, LOG_ALL, ANY_LAYOUT (=
// VHOST_NET_F_VIRTIO_NET_HDR), VERSION_1, MRG_RXBUF, ACCESS_PLATFORM,
// RING_RESET.
const NetFeatures uint64 = 1<<24 | 1<<28 | 1<<29 | 1<<uapi.VHOST_F_LOG_ALL | 1<<uapi.VHOST_NET_F_VIRTIO_NET_HDR |
	1<<32 | 1<<15 | 1<<33 | 1<<40

// maxMemRegions is vhost's default max_mem_regions module parameter.
const maxMemRegions = 64

// Call is one recorded Device call.
type Call struct {
	Op    string // SET_OWNER, GET_FEATURES, SET_FEATURES, SET_MEM_TABLE, SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_BUSYLOOP_TIMEOUT, SET_BACKEND, CLOSE
	Vring uint32 // for vring calls
	Arg   uint64 // features, num, base, µs; for fds the fd as int64 (so -1 reads back as -1)
	Err   error  // what the call returned
}

// String is the compact form tests compare against: "SET_VRING_NUM 0 256";
// fds that detach print as -1, other fds as "fd".
func (c Call) String() string {
	switch c.Op {
	case "SET_OWNER", "GET_FEATURES", "SET_MEM_TABLE", "CLOSE":
		return c.Op
	case "SET_FEATURES":
		return fmt.Sprintf("%s %#x", c.Op, c.Arg)
	case "GET_VRING_BASE", "SET_VRING_ADDR":
		return fmt.Sprintf("%s %d", c.Op, c.Vring)
	case "SET_VRING_KICK", "SET_VRING_CALL", "SET_BACKEND":
		if int64(c.Arg) == -1 {
			return fmt.Sprintf("%s %d -1", c.Op, c.Vring)
		}
		return fmt.Sprintf("%s %d fd", c.Op, c.Vring)
	default:
		return fmt.Sprintf("%s %d %d", c.Op, c.Vring, c.Arg)
	}
}

// Vring is the fake kernel's state of one virtqueue.
type Vring struct {
	Num       uint32
	LastAvail uint32 // SET/GET_VRING_BASE
	Addr      vhost.VringAddr
	AddrSet   bool
	Kick      int // -1 when none
	Call      int
	Backend   int    // -1 when none: the kernel's vq->private_data
	Busyloop  uint32 // busy-poll timeout in µs, 0 when off
}

// Fake is a vhost-net descriptor in memory. The zero value is not usable;
// use NewNet. It is safe for concurrent use.
type Fake struct {
	// Fail, if set, is consulted before every call but Close; a non-nil
	// result is returned as the call's error without changing any state (an
	// ioctl that failed). It runs under the Fake's lock: it must not call
	// the Fake's methods.
	Fail func(c Call) error

	mu       sync.Mutex
	offered  uint64
	owner    bool
	closed   bool
	features uint64
	mem      []vhost.MemRegion
	memSet   bool
	vrings   [2]Vring
	calls    []Call
}

// NewNet returns a fresh fake vhost-net offering features (NetFeatures if 0).
func NewNet(features uint64) *Fake {
	if features == 0 {
		features = NetFeatures
	}
	f := &Fake{offered: features}
	for i := range f.vrings {
		f.vrings[i] = Vring{Num: 1, Kick: -1, Call: -1, Backend: -1} // vhost_vq_reset sets num 1
	}
	return f
}

// Calls returns every call so far, failed ones included.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Ops returns the String form of every call that succeeded.
func (f *Fake) Ops() []string {
	var ops []string
	for _, c := range f.Calls() {
		if c.Err == nil {
			ops = append(ops, c.String())
		}
	}
	return ops
}

// Reset forgets the recorded calls (not the state).
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// Vring returns the state of vring i.
func (f *Fake) Vring(i int) Vring {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vrings[i]
}

// Features returns the features last set.
func (f *Fake) Features() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.features
}

// MemTable returns the memory table last set.
func (f *Fake) MemTable() []vhost.MemRegion {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]vhost.MemRegion(nil), f.mem...)
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// Consume moves vring i's avail index on by n, as the kernel does while it
// processes buffers; GET_VRING_BASE then reports it.
func (f *Fake) Consume(i int, n uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vrings[i].LastAvail = uint32(uint16(f.vrings[i].LastAvail) + n)
}

// do records c and runs op under the lock unless the device is closed or
// Fail says otherwise.
func (f *Fake) do(c Call, op func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	if f.closed {
		err = unix.EBADF
	} else if f.Fail != nil {
		err = f.Fail(c)
	}
	if err == nil && !f.closed {
		err = op()
	}
	c.Err = err
	f.calls = append(f.calls, c)
	return err
}

// owned mirrors vhost_dev_check_owner: everything but SET_OWNER and the
// feature calls needs an owner.
func (f *Fake) owned() error {
	if !f.owner {
		return unix.EPERM
	}
	return nil
}

// vring mirrors vhost_vring_ioctl's prologue.
func (f *Fake) vring(i uint32) (*Vring, error) {
	if err := f.owned(); err != nil {
		return nil, err
	}
	if i >= uint32(len(f.vrings)) {
		return nil, unix.ENOBUFS
	}
	return &f.vrings[i], nil
}

func (f *Fake) SetOwner() error {
	return f.do(Call{Op: "SET_OWNER"}, func() error {
		if f.owner {
			return unix.EBUSY
		}
		f.owner = true
		return nil
	})
}

func (f *Fake) GetFeatures() (uint64, error) {
	var v uint64
	err := f.do(Call{Op: "GET_FEATURES"}, func() error { v = f.offered; return nil })
	return v, err
}

func (f *Fake) SetFeatures(features uint64) error {
	return f.do(Call{Op: "SET_FEATURES", Arg: features}, func() error {
		if features&^f.offered != 0 {
			return unix.EOPNOTSUPP
		}
		if features&(1<<uapi.VHOST_F_LOG_ALL) != 0 {
			return unix.EFAULT // no log base was set: vhost_log_access_ok fails
		}
		f.features = features
		return nil
	})
}

func (f *Fake) SetMemTable(regions []vhost.MemRegion) error {
	return f.do(Call{Op: "SET_MEM_TABLE", Arg: uint64(len(regions))}, func() error {
		if err := f.owned(); err != nil {
			return err
		}
		if len(regions) > maxMemRegions {
			return unix.E2BIG
		}
		for _, r := range regions {
			// vhost_iotlb_add_range(start, start+size-1) refuses last < start.
			if r.Size == 0 || r.GuestPhys+r.Size-1 < r.GuestPhys || r.UserAddr+r.Size-1 < r.UserAddr {
				return unix.EFAULT
			}
		}
		f.mem = append([]vhost.MemRegion(nil), regions...)
		f.memSet = true
		return nil
	})
}

func (f *Fake) SetVringNum(i, num uint32) error {
	return f.do(Call{Op: "SET_VRING_NUM", Vring: i, Arg: uint64(num)}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		if vq.Backend >= 0 {
			return unix.EBUSY // "Resizing ring with an active backend?"
		}
		if num == 0 || num > 0xffff || num&(num-1) != 0 {
			return unix.EINVAL
		}
		vq.Num = num
		return nil
	})
}

func (f *Fake) SetVringBase(i, base uint32) error {
	return f.do(Call{Op: "SET_VRING_BASE", Vring: i, Arg: uint64(base)}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		if vq.Backend >= 0 {
			return unix.EBUSY // "Moving base with an active backend?"
		}
		if base > 0xffff {
			return unix.EINVAL
		}
		vq.LastAvail = base
		return nil
	})
}

func (f *Fake) GetVringBase(i uint32) (uint32, error) {
	var v uint32
	err := f.do(Call{Op: "GET_VRING_BASE", Vring: i}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		v = vq.LastAvail
		return nil
	})
	return v, err
}

func (f *Fake) SetVringAddr(i uint32, a vhost.VringAddr) error {
	return f.do(Call{Op: "SET_VRING_ADDR", Vring: i}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		if a.Avail%2 != 0 || a.Used%4 != 0 {
			return unix.EINVAL // VRING_AVAIL_ALIGN_SIZE, VRING_USED_ALIGN_SIZE
		}
		// With a backend attached the kernel checks access right away.
		if vq.Backend >= 0 && !f.ringsMapped(vq.Num, a) {
			return unix.EINVAL
		}
		vq.Addr, vq.AddrSet = a, true
		return nil
	})
}

func (f *Fake) SetVringKick(i uint32, fd int) error {
	return f.do(Call{Op: "SET_VRING_KICK", Vring: i, Arg: uint64(int64(fd))}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		if err := checkEventFD(fd); err != nil {
			return err
		}
		vq.Kick = fd
		return nil
	})
}

func (f *Fake) SetVringCall(i uint32, fd int) error {
	return f.do(Call{Op: "SET_VRING_CALL", Vring: i, Arg: uint64(int64(fd))}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		if err := checkEventFD(fd); err != nil {
			return err
		}
		vq.Call = fd
		return nil
	})
}

// SetVringBusyloopTimeout mirrors vhost_vring_ioctl: any value is taken,
// also with a backend attached. A kernel older than 4.6 fails with ENOTTY;
// set Fail to play one.
func (f *Fake) SetVringBusyloopTimeout(i, usecs uint32) error {
	return f.do(Call{Op: "SET_VRING_BUSYLOOP_TIMEOUT", Vring: i, Arg: uint64(usecs)}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		vq.Busyloop = usecs
		return nil
	})
}

// SetBackend mirrors vhost_net_set_backend. Stricter than the kernel in two
// ways that the kernel would only reveal later as a dead or faulting ring:
// the vring's addresses and size must have been set and its rings must lie
// inside the memory table (the kernel checks access_ok on them and reads
// used->idx, then fails every descriptor it cannot translate).
func (f *Fake) SetBackend(i uint32, fd int) error {
	return f.do(Call{Op: "SET_BACKEND", Vring: i, Arg: uint64(int64(fd))}, func() error {
		vq, err := f.vring(i)
		if err != nil {
			return err
		}
		if fd == uapi.VHOST_FILE_UNBIND {
			vq.Backend = -1
			return nil
		}
		if !f.memSet || !vq.AddrSet || !f.ringsMapped(vq.Num, vq.Addr) {
			return unix.EFAULT
		}
		if err := checkSocket(fd); err != nil {
			return err
		}
		vq.Backend = fd
		return nil
	})
}

func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, Call{Op: "CLOSE"})
	f.closed = true
	return nil
}

// ringsMapped reports whether the three rings of a vring of num entries lie
// inside host memory the table maps.
func (f *Fake) ringsMapped(num uint32, a vhost.VringAddr) bool {
	n := uint64(num)
	return f.mapped(a.Desc, 16*n) && f.mapped(a.Avail, 6+2*n) && f.mapped(a.Used, 6+8*n)
}

func (f *Fake) mapped(addr, size uint64) bool {
	for _, r := range f.mem {
		if addr >= r.UserAddr && addr+size >= addr && addr+size <= r.UserAddr+r.Size {
			return true
		}
	}
	return false
}

// checkEventFD mirrors eventfd_fget/eventfd_ctx_fdget: -1 detaches, a
// closed fd is EBADF, anything but an eventfd EINVAL.
func checkEventFD(fd int) error {
	if fd == uapi.VHOST_FILE_UNBIND {
		return nil
	}
	link, err := fdLink(fd)
	if err != nil {
		return err
	}
	if link != "anon_inode:[eventfd]" {
		return unix.EINVAL
	}
	return nil
}

// checkSocket mirrors get_socket: a TAP (/dev/net/tun) or a socket, else
// ENOTSOCK; a closed fd is EBADF.
func checkSocket(fd int) error {
	link, err := fdLink(fd)
	if err != nil {
		return err
	}
	if link != "/dev/net/tun" && !strings.HasPrefix(link, "socket:") {
		return unix.ENOTSOCK
	}
	return nil
}

func fdLink(fd int) (string, error) {
	if fd < 0 {
		return "", unix.EBADF
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", unix.EBADF
	}
	return link, nil
}
