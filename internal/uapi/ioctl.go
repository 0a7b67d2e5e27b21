// Package uapi holds the Linux user-space ABI hlsvmm talks to: ioctl numbers
// and structs from kvm.h, vhost.h and friends, under the kernel's own names.
// It is deliberately dumb: no policy, no state, only encodings. Everything
// with meaning ("set up this vring") lives in the packages above it.
package uapi

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl request encoding, include/uapi/asm-generic/ioctl.h (x86 uses the
// generic layout: 8 bits nr, 8 bits type, 14 bits size, 2 bits direction).
const (
	iocNRBits   = 8
	iocTypeBits = 8
	iocSizeBits = 14

	iocNRShift   = 0
	iocTypeShift = iocNRShift + iocNRBits
	iocSizeShift = iocTypeShift + iocTypeBits
	iocDirShift  = iocSizeShift + iocSizeBits

	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, typ, nr, size uintptr) uintptr {
	return dir<<iocDirShift | typ<<iocTypeShift | nr<<iocNRShift | size<<iocSizeShift
}

// IO is _IO(type, nr).
func IO(typ, nr uintptr) uintptr { return ioc(iocNone, typ, nr, 0) }

// IOR is _IOR(type, nr, size).
func IOR(typ, nr, size uintptr) uintptr { return ioc(iocRead, typ, nr, size) }

// IOW is _IOW(type, nr, size).
func IOW(typ, nr, size uintptr) uintptr { return ioc(iocWrite, typ, nr, size) }

// IOWR is _IOWR(type, nr, size).
func IOWR(typ, nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, typ, nr, size) }

// Ioctl issues an ioctl whose argument is a plain integer.
func Ioctl(fd int, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// IoctlPtr issues an ioctl whose argument points at memory owned by the caller.
func IoctlPtr(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return r, errno
	}
	return r, nil
}
