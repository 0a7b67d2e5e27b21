package uapi

import (
	"testing"
	"unsafe"
)

// Expected values printed by a C program including <linux/vhost.h> on x86-64.
func TestVhostIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"VHOST_GET_FEATURES", VHOST_GET_FEATURES, 0x8008AF00},
		{"VHOST_SET_FEATURES", VHOST_SET_FEATURES, 0x4008AF00},
		{"VHOST_SET_OWNER", VHOST_SET_OWNER, 0xAF01},
		{"VHOST_RESET_OWNER", VHOST_RESET_OWNER, 0xAF02},
		{"VHOST_SET_MEM_TABLE", VHOST_SET_MEM_TABLE, 0x4008AF03},
		{"VHOST_SET_LOG_BASE", VHOST_SET_LOG_BASE, 0x4008AF04},
		{"VHOST_SET_LOG_FD", VHOST_SET_LOG_FD, 0x4004AF07},
		{"VHOST_SET_VRING_NUM", VHOST_SET_VRING_NUM, 0x4008AF10},
		{"VHOST_SET_VRING_ADDR", VHOST_SET_VRING_ADDR, 0x4028AF11},
		{"VHOST_SET_VRING_BASE", VHOST_SET_VRING_BASE, 0x4008AF12},
		{"VHOST_GET_VRING_BASE", VHOST_GET_VRING_BASE, 0xC008AF12},
		{"VHOST_SET_VRING_KICK", VHOST_SET_VRING_KICK, 0x4008AF20},
		{"VHOST_SET_VRING_CALL", VHOST_SET_VRING_CALL, 0x4008AF21},
		{"VHOST_SET_VRING_ERR", VHOST_SET_VRING_ERR, 0x4008AF22},
		{"VHOST_SET_VRING_BUSYLOOP_TIMEOUT", VHOST_SET_VRING_BUSYLOOP_TIMEOUT, 0x4008AF23},
		{"VHOST_GET_VRING_BUSYLOOP_TIMEOUT", VHOST_GET_VRING_BUSYLOOP_TIMEOUT, 0x4008AF24},
		{"VHOST_SET_BACKEND_FEATURES", VHOST_SET_BACKEND_FEATURES, 0x4008AF25},
		{"VHOST_GET_BACKEND_FEATURES", VHOST_GET_BACKEND_FEATURES, 0x8008AF26},
		{"VHOST_NET_SET_BACKEND", VHOST_NET_SET_BACKEND, 0x4008AF30},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

// Sizes and offsets as the C compiler lays the structs out on x86-64.
func TestVhostStructLayout(t *testing.T) {
	var a VhostVringAddr
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(struct vhost_vring_state)", unsafe.Sizeof(VhostVringState{}), 8},
		{"sizeof(struct vhost_vring_file)", unsafe.Sizeof(VhostVringFile{}), 8},
		{"sizeof(struct vhost_vring_addr)", unsafe.Sizeof(a), 40},
		{"offsetof(vhost_vring_addr, flags)", unsafe.Offsetof(a.Flags), 4},
		{"offsetof(vhost_vring_addr, desc_user_addr)", unsafe.Offsetof(a.DescUserAddr), 8},
		{"offsetof(vhost_vring_addr, used_user_addr)", unsafe.Offsetof(a.UsedUserAddr), 16},
		{"offsetof(vhost_vring_addr, avail_user_addr)", unsafe.Offsetof(a.AvailUserAddr), 24},
		{"offsetof(vhost_vring_addr, log_guest_addr)", unsafe.Offsetof(a.LogGuestAddr), 32},
		{"sizeof(struct vhost_memory)", unsafe.Sizeof(VhostMemory{}), 8},
		{"sizeof(struct vhost_memory_region)", unsafe.Sizeof(VhostMemoryRegion{}), 32},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}
