// Package vmm drives the Linux KVM API: the /dev/kvm handle (System), a
// virtual machine with its memory, in-kernel interrupt controllers, GSI
// routing, irqfds and ioeventfds (VM), virtual CPUs and their run loop
// (VCPU), and the assembly of a bootable machine from those parts (Machine).
//
// Everything here is a typed wrapper over the ioctls in internal/uapi. Each
// file descriptor has one owner whose Close is idempotent.
package vmm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"golang.org/x/sys/unix"
)

// DefaultDevice is where the KVM API lives.
const DefaultDevice = "/dev/kvm"

// Capability is a KVM capability number and its kernel name.
type Capability struct {
	Cap  int
	Name string
}

// RequiredCapabilities are checked once when the System is opened: hlsvmm
// cannot boot a guest without any of them.
func RequiredCapabilities() []Capability {
	return []Capability{
		{uapi.KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
		{uapi.KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
		{uapi.KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
		{uapi.KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
		{uapi.KVM_CAP_PIT2, "KVM_CAP_PIT2"},
		{uapi.KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
		{uapi.KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
		{uapi.KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
		{uapi.KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
		{uapi.KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
		{uapi.KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI"},
		{uapi.KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
	}
}

// System is an open /dev/kvm whose API version and required capabilities
// have been checked.
type System struct {
	fd        int
	mmapSize  int
	closeOnce sync.Once
	closeErr  error
}

// Open opens the KVM device (DefaultDevice if path is empty) and checks that
// it speaks API version 12 and has every capability hlsvmm needs. Errors
// match ErrNotSupported when the host cannot run hlsvmm.
func Open(path string) (*System, error) {
	s, err := OpenUnchecked(path)
	if err != nil {
		return nil, err
	}
	if b := Backend(); b == BackendPVM {
		s.Close()
		return nil, &BackendError{Backend: b}
	}
	var missing []string
	for _, c := range RequiredCapabilities() {
		if s.CheckExtension(c.Cap) <= 0 {
			missing = append(missing, c.Name)
		}
	}
	if len(missing) > 0 {
		s.Close()
		return nil, &MissingCapabilitiesError{Missing: missing}
	}
	n, err := uapi.Ioctl(s.fd, uapi.KVM_GET_VCPU_MMAP_SIZE, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if int(n) < int(unsafe.Sizeof(uapi.KvmRun{})) {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %d bytes, smaller than struct kvm_run", n)
	}
	s.mmapSize = int(n)
	return s, nil
}

// OpenUnchecked opens the KVM device and checks only the API version: for
// reporting (hlsvmm probe) what a host has and lacks.
func OpenUnchecked(path string) (*System, error) {
	if path == "" {
		path = DefaultDevice
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &UnavailableError{Path: path, Err: err}
	}
	s := &System{fd: fd}
	v, err := uapi.Ioctl(fd, uapi.KVM_GET_API_VERSION, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("KVM_GET_API_VERSION on %s: %w", path, err)
	}
	if v != uapi.KVM_API_VERSION {
		s.Close()
		return nil, &APIVersionError{Got: int(v)}
	}
	return s, nil
}

// Close releases /dev/kvm. VMs created from the System stay valid: the
// kernel holds its own reference. Close is idempotent.
func (s *System) Close() error {
	s.closeOnce.Do(func() {
		if err := unix.Close(s.fd); err != nil {
			s.closeErr = fmt.Errorf("close /dev/kvm: %w", err)
		}
	})
	return s.closeErr
}

// APIVersion is KVM_GET_API_VERSION (always 12 on an opened System).
func (s *System) APIVersion() int {
	v, err := uapi.Ioctl(s.fd, uapi.KVM_GET_API_VERSION, 0)
	if err != nil {
		return -1
	}
	return int(v)
}

// CheckExtension is KVM_CHECK_EXTENSION: 0 for an absent capability,
// otherwise a positive, capability-specific value. An error counts as absent.
func (s *System) CheckExtension(capability int) int {
	v, err := uapi.Ioctl(s.fd, uapi.KVM_CHECK_EXTENSION, uintptr(capability))
	if err != nil {
		return 0
	}
	return int(v)
}

// MaxVCPUs is the most vCPUs one VM may have: KVM_CAP_MAX_VCPUS, or
// KVM_CAP_NR_VCPUS on kernels that lack it, or 4 (the API's documented
// fallback).
func (s *System) MaxVCPUs() int {
	if n := s.CheckExtension(uapi.KVM_CAP_MAX_VCPUS); n > 0 {
		return n
	}
	if n := s.CheckExtension(uapi.KVM_CAP_NR_VCPUS); n > 0 {
		return n
	}
	return 4
}

// RecommendedVCPUs is KVM_CAP_NR_VCPUS: the most vCPUs KVM recommends.
func (s *System) RecommendedVCPUs() int { return s.CheckExtension(uapi.KVM_CAP_NR_VCPUS) }

// VCPUMmapSize is the size of the region each vCPU fd maps (kvm_run and
// the pages after it).
func (s *System) VCPUMmapSize() int { return s.mmapSize }

// KVM backends: the vendor module that implements /dev/kvm.
const (
	BackendIntel = "kvm_intel"
	BackendAMD   = "kvm_amd"
	// BackendPVM is kvm_pvm: KVM on page tables, without hardware
	// virtualization, for PVM-enabled guest kernels only.
	BackendPVM = "kvm_pvm"
)

// Backend names the loaded KVM vendor module (Backend* constants), or ""
// when none is known (no sysfs, or built into the kernel).
func Backend() string { return backendIn("/sys/module") }

func backendIn(sysModule string) string {
	for _, b := range []string{BackendIntel, BackendAMD, BackendPVM} {
		if _, err := os.Stat(filepath.Join(sysModule, b)); err == nil {
			return b
		}
	}
	return ""
}

// maxCPUIDEntries bounds the retries of KVM_GET_SUPPORTED_CPUID.
const maxCPUIDEntries = 1024

// SupportedCPUID is KVM_GET_SUPPORTED_CPUID: every leaf this host's KVM can
// present to a guest, the 0x40000000 KVM leaves included.
func (s *System) SupportedCPUID() (CPUID, error) {
	for n := 80; n <= maxCPUIDEntries; n *= 2 {
		buf := newCPUIDBuffer(n)
		_, err := uapi.IoctlPtr(s.fd, uapi.KVM_GET_SUPPORTED_CPUID, buf.ptr())
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return buf.entries(), nil
	}
	return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: more than %d entries", maxCPUIDEntries)
}

// createVM is KVM_CREATE_VM with the default machine type; the caller owns
// the returned fd.
func (s *System) createVM() (int, error) {
	fd, err := uapi.Ioctl(s.fd, uapi.KVM_CREATE_VM, 0)
	if err != nil {
		return -1, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	return int(fd), nil
}
