package uapi

import "unsafe"

// From include/uapi/linux/vhost.h and vhost_types.h: the ioctls and structs
// of /dev/vhost-net (and the generic vhost core), under the kernel's names.

// VHOST_VIRTIO is the ioctl type of every vhost request.
const VHOST_VIRTIO = 0xAF

// VHOST_FILE_UNBIND as the fd of a vhost_vring_file detaches the file.
const VHOST_FILE_UNBIND = -1

// VHOST_PAGE_SIZE is the granularity of the dirty log.
const VHOST_PAGE_SIZE = 0x1000

// Feature bits owned by vhost rather than virtio (vhost_types.h).
const (
	VHOST_F_LOG_ALL            = 26 // log all writes to guest memory (live migration)
	VHOST_NET_F_VIRTIO_NET_HDR = 27 // vhost adds/strips the virtio-net header itself (same bit as VIRTIO_F_ANY_LAYOUT)
)

// Backend feature bits, for VHOST_{GET,SET}_BACKEND_FEATURES (vhost_types.h).
const (
	VHOST_BACKEND_F_IOTLB_MSG_V2 = 0x1
	VHOST_BACKEND_F_IOTLB_BATCH  = 0x2
	VHOST_BACKEND_F_IOTLB_ASID   = 0x3
	VHOST_BACKEND_F_SUSPEND      = 0x4
)

// VHOST_VRING_F_LOG is the bit number in vhost_vring_addr.flags that enables
// logging of used-ring writes at log_guest_addr.
const VHOST_VRING_F_LOG = 0

// VhostVringState is struct vhost_vring_state.
type VhostVringState struct {
	Index uint32
	Num   uint32
}

// VhostVringFile is struct vhost_vring_file.
type VhostVringFile struct {
	Index uint32
	Fd    int32 // VHOST_FILE_UNBIND to detach
}

// VhostVringAddr is struct vhost_vring_addr. The ring addresses are host
// virtual addresses in the calling process.
type VhostVringAddr struct {
	Index         uint32
	Flags         uint32
	DescUserAddr  uint64
	UsedUserAddr  uint64
	AvailUserAddr uint64
	LogGuestAddr  uint64
}

// VhostMemory is the fixed head of struct vhost_memory; Nregions
// VhostMemoryRegion entries follow it directly in memory.
type VhostMemory struct {
	Nregions uint32
	Padding  uint32
}

// VhostMemoryRegion is struct vhost_memory_region.
type VhostMemoryRegion struct {
	GuestPhysAddr uint64
	MemorySize    uint64 // bytes
	UserspaceAddr uint64
	FlagsPadding  uint64 // no flags are defined
}

// vhost ioctl requests. These are variables only because Go cannot call
// IOW in a constant expression; nothing assigns them.
var (
	VHOST_GET_FEATURES  = IOR(VHOST_VIRTIO, 0x00, unsafe.Sizeof(uint64(0)))
	VHOST_SET_FEATURES  = IOW(VHOST_VIRTIO, 0x00, unsafe.Sizeof(uint64(0)))
	VHOST_SET_OWNER     = IO(VHOST_VIRTIO, 0x01)
	VHOST_RESET_OWNER   = IO(VHOST_VIRTIO, 0x02)
	VHOST_SET_MEM_TABLE = IOW(VHOST_VIRTIO, 0x03, unsafe.Sizeof(VhostMemory{}))
	VHOST_SET_LOG_BASE  = IOW(VHOST_VIRTIO, 0x04, unsafe.Sizeof(uint64(0)))
	VHOST_SET_LOG_FD    = IOW(VHOST_VIRTIO, 0x07, unsafe.Sizeof(int32(0)))

	VHOST_SET_VRING_NUM  = IOW(VHOST_VIRTIO, 0x10, unsafe.Sizeof(VhostVringState{}))
	VHOST_SET_VRING_ADDR = IOW(VHOST_VIRTIO, 0x11, unsafe.Sizeof(VhostVringAddr{}))
	VHOST_SET_VRING_BASE = IOW(VHOST_VIRTIO, 0x12, unsafe.Sizeof(VhostVringState{}))
	VHOST_GET_VRING_BASE = IOWR(VHOST_VIRTIO, 0x12, unsafe.Sizeof(VhostVringState{}))
	VHOST_SET_VRING_KICK = IOW(VHOST_VIRTIO, 0x20, unsafe.Sizeof(VhostVringFile{}))
	VHOST_SET_VRING_CALL = IOW(VHOST_VIRTIO, 0x21, unsafe.Sizeof(VhostVringFile{}))
	VHOST_SET_VRING_ERR  = IOW(VHOST_VIRTIO, 0x22, unsafe.Sizeof(VhostVringFile{}))

	// Busy-poll timeout in µs (Num) of a vring (Linux 4.6). GET is _IOW in
	// the kernel's header too.
	VHOST_SET_VRING_BUSYLOOP_TIMEOUT = IOW(VHOST_VIRTIO, 0x23, unsafe.Sizeof(VhostVringState{}))
	VHOST_GET_VRING_BUSYLOOP_TIMEOUT = IOW(VHOST_VIRTIO, 0x24, unsafe.Sizeof(VhostVringState{}))

	VHOST_SET_BACKEND_FEATURES = IOW(VHOST_VIRTIO, 0x25, unsafe.Sizeof(uint64(0)))
	VHOST_GET_BACKEND_FEATURES = IOR(VHOST_VIRTIO, 0x26, unsafe.Sizeof(uint64(0)))

	VHOST_NET_SET_BACKEND = IOW(VHOST_VIRTIO, 0x30, unsafe.Sizeof(VhostVringFile{}))
)
