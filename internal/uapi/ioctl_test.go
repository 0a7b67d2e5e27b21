package uapi

import "testing"

// The expected values are the kernel's own, as printed by a C program
// including <linux/kvm.h> and <linux/vhost.h> on x86-64.
func TestEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"KVM_GET_API_VERSION", IO(0xAE, 0x00), 0xAE00},
		{"KVM_RUN", IO(0xAE, 0x80), 0xAE80},
		{"KVM_SET_USER_MEMORY_REGION", IOW(0xAE, 0x46, 32), 0x4020AE46},
		{"KVM_GET_REGS", IOR(0xAE, 0x81, 144), 0x8090AE81},
		{"VHOST_GET_FEATURES", IOR(0xAF, 0x00, 8), 0x8008AF00},
		{"VHOST_GET_VRING_BASE", IOWR(0xAF, 0x12, 8), 0xC008AF12},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}
