// Package vhost is hlsvmm's client of the kernel's vhost-net: it hands the
// virtqueues of one virtio-net queue pair to /dev/vhost-net, so packets move
// between the guest's rings and a TAP inside the kernel and never pass
// through hlsvmm.
//
// The package has two layers. Device is the kernel side, one method per
// ioctl and nothing else (kvmtool's virtio/vhost.c is the model); the real
// one issues ioctls on a /dev/vhost-net descriptor, and vhosttest.Fake is a
// stand-in that enforces the kernel's rules, so the layer above is tested
// without a kernel. Net is that layer: the fixed order owner → features →
// memory table → per vring num/base/addr/kick/call → backend, the reset
// path, and undoing a half-done start. NetBackend adapts Net to virtio/net.
package vhost

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

// Device is one vhost descriptor as the kernel sees it, one method per ioctl.
// Vring indexes are the descriptor's own (vhost-net: 0 is RX, 1 is TX),
// addresses in VringAddr and MemRegion.UserAddr are host virtual addresses,
// and fds are borrowed (the kernel takes its own reference). Errors are the
// kernel's errno, unwrapped. A Device is not safe for concurrent use.
type Device interface {
	SetOwner() error                          // VHOST_SET_OWNER
	GetFeatures() (uint64, error)             // VHOST_GET_FEATURES
	SetFeatures(features uint64) error        // VHOST_SET_FEATURES
	SetMemTable(regions []MemRegion) error    // VHOST_SET_MEM_TABLE
	SetVringNum(i, num uint32) error          // VHOST_SET_VRING_NUM
	SetVringBase(i, base uint32) error        // VHOST_SET_VRING_BASE
	GetVringBase(i uint32) (uint32, error)    // VHOST_GET_VRING_BASE
	SetVringAddr(i uint32, a VringAddr) error // VHOST_SET_VRING_ADDR (flags 0: no logging)
	SetVringKick(i uint32, fd int) error      // VHOST_SET_VRING_KICK; fd -1 unbinds
	SetVringCall(i uint32, fd int) error      // VHOST_SET_VRING_CALL; fd -1 unbinds
	SetBackend(i uint32, fd int) error        // VHOST_NET_SET_BACKEND; fd -1 unbinds
	// SetVringBusyloopTimeout is VHOST_SET_VRING_BUSYLOOP_TIMEOUT (Linux
	// 4.6): how long, in µs, the vhost worker polls the ring and the TAP
	// before it sleeps; 0 turns polling off. Older kernels fail with ENOTTY.
	SetVringBusyloopTimeout(i, usecs uint32) error
	// Close releases the descriptor. It is idempotent.
	Close() error
}

// MemRegion is one entry of the memory table: guest-physical range
// [GuestPhys, GuestPhys+Size) is host memory at UserAddr.
type MemRegion struct {
	GuestPhys uint64
	Size      uint64
	UserAddr  uint64
}

// VringAddr holds the host virtual addresses of a split ring's three parts.
type VringAddr struct {
	Desc  uint64 // descriptor table, 16-byte aligned
	Avail uint64 // driver (available) ring, 2-byte aligned
	Used  uint64 // device (used) ring, 4-byte aligned
}

// DevicePath is where the kernel's vhost-net lives.
const DevicePath = "/dev/vhost-net"

// ErrNotAvailable is wrapped by OpenNet's error when /dev/vhost-net cannot be
// opened at all (module not loaded, no permission): a caller that may fall
// back to a userspace datapath (--vhost=auto) checks it with errors.Is. The
// errno stays matchable too.
var ErrNotAvailable = errors.New("vhost-net not available")

// kernelDevice is the real Device: ioctls on a /dev/vhost-net descriptor.
type kernelDevice struct {
	fd int // -1 once closed
}

// openKernel opens path the way every VMM does: read-write, non-blocking,
// close-on-exec. The caller owns the result.
func openKernel(path string) (*kernelDevice, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w; %s", ErrNotAvailable, path, err, openHint(err))
	}
	return &kernelDevice{fd: fd}, nil
}

// openHint says how to get a working /dev/vhost-net after open failed with err.
func openHint(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return "load the module with `modprobe vhost_net` (kernel option CONFIG_VHOST_NET), or run with --vhost=off"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return "give this user read-write access to it without opening it to everyone: " +
			"a group (udev rule KERNEL==\"vhost-net\", GROUP=\"kvm\", MODE=\"0660\", and membership in kvm) " +
			"or an ACL (setfacl -m u:USER:rw /dev/vhost-net); or run with --vhost=off"
	default:
		return "run with --vhost=off to use the userspace datapath"
	}
}

func (d *kernelDevice) ioctl(req uintptr, arg unsafe.Pointer) error {
	if d.fd < 0 {
		return unix.EBADF
	}
	_, err := uapi.IoctlPtr(d.fd, req, arg)
	return err
}

func (d *kernelDevice) SetOwner() error {
	return d.ioctl(uapi.VHOST_SET_OWNER, nil)
}

func (d *kernelDevice) GetFeatures() (uint64, error) {
	var f uint64
	err := d.ioctl(uapi.VHOST_GET_FEATURES, unsafe.Pointer(&f))
	return f, err
}

func (d *kernelDevice) SetFeatures(features uint64) error {
	return d.ioctl(uapi.VHOST_SET_FEATURES, unsafe.Pointer(&features))
}

func (d *kernelDevice) SetMemTable(regions []MemRegion) error {
	// struct vhost_memory with its flexible array: one 8-byte head, then
	// 32 bytes per region, in a []uint64 so the kernel sees it aligned.
	const head = unsafe.Sizeof(uapi.VhostMemory{}) / 8
	const per = unsafe.Sizeof(uapi.VhostMemoryRegion{}) / 8
	buf := make([]uint64, head+per*uintptr(len(regions)))
	*(*uapi.VhostMemory)(unsafe.Pointer(&buf[0])) = uapi.VhostMemory{Nregions: uint32(len(regions))}
	for i, r := range regions {
		*(*uapi.VhostMemoryRegion)(unsafe.Pointer(&buf[head+per*uintptr(i)])) = uapi.VhostMemoryRegion{
			GuestPhysAddr: r.GuestPhys,
			MemorySize:    r.Size,
			UserspaceAddr: r.UserAddr,
		}
	}
	return d.ioctl(uapi.VHOST_SET_MEM_TABLE, unsafe.Pointer(&buf[0]))
}

func (d *kernelDevice) SetVringNum(i, num uint32) error {
	s := uapi.VhostVringState{Index: i, Num: num}
	return d.ioctl(uapi.VHOST_SET_VRING_NUM, unsafe.Pointer(&s))
}

func (d *kernelDevice) SetVringBase(i, base uint32) error {
	s := uapi.VhostVringState{Index: i, Num: base}
	return d.ioctl(uapi.VHOST_SET_VRING_BASE, unsafe.Pointer(&s))
}

func (d *kernelDevice) GetVringBase(i uint32) (uint32, error) {
	s := uapi.VhostVringState{Index: i}
	err := d.ioctl(uapi.VHOST_GET_VRING_BASE, unsafe.Pointer(&s))
	return s.Num, err
}

func (d *kernelDevice) SetVringAddr(i uint32, a VringAddr) error {
	k := uapi.VhostVringAddr{Index: i, DescUserAddr: a.Desc, AvailUserAddr: a.Avail, UsedUserAddr: a.Used}
	return d.ioctl(uapi.VHOST_SET_VRING_ADDR, unsafe.Pointer(&k))
}

func (d *kernelDevice) SetVringBusyloopTimeout(i, usecs uint32) error {
	s := uapi.VhostVringState{Index: i, Num: usecs}
	return d.ioctl(uapi.VHOST_SET_VRING_BUSYLOOP_TIMEOUT, unsafe.Pointer(&s))
}

func (d *kernelDevice) setFile(req uintptr, i uint32, fd int) error {
	f := uapi.VhostVringFile{Index: i, Fd: int32(fd)}
	return d.ioctl(req, unsafe.Pointer(&f))
}

func (d *kernelDevice) SetVringKick(i uint32, fd int) error {
	return d.setFile(uapi.VHOST_SET_VRING_KICK, i, fd)
}

func (d *kernelDevice) SetVringCall(i uint32, fd int) error {
	return d.setFile(uapi.VHOST_SET_VRING_CALL, i, fd)
}

func (d *kernelDevice) SetBackend(i uint32, fd int) error {
	return d.setFile(uapi.VHOST_NET_SET_BACKEND, i, fd)
}

func (d *kernelDevice) Close() error {
	if d.fd < 0 {
		return nil
	}
	fd := d.fd
	d.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", DevicePath, err)
	}
	return nil
}
