package vmm

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// ErrNotSupported is wrapped by every error that means "this host's KVM
// cannot run hlsvmm": no /dev/kvm, a wrong API version, missing capabilities.
var ErrNotSupported = errors.New("KVM not usable")

// UnavailableError reports that /dev/kvm could not be opened, with what to
// do about it.
type UnavailableError struct {
	Path string
	Err  error // the errno from open
}

func (e *UnavailableError) Error() string {
	var hint string
	switch {
	case errors.Is(e.Err, fs.ErrNotExist):
		hint = "the kvm module is not loaded or the CPU has no virtualization enabled: " +
			"modprobe kvm_intel (Intel) or modprobe kvm_amd (AMD), enable VT-x/AMD-V in the firmware, " +
			"or for a VM host enable nested virtualization"
	case errors.Is(e.Err, fs.ErrPermission):
		hint = "no permission: add the user to group kvm (usermod -aG kvm $USER, then log in again) or run as root"
	default:
		hint = "check that KVM works on this host (dmesg | grep -i kvm)"
	}
	return fmt.Sprintf("open %s: %v (%s)", e.Path, e.Err, hint)
}

func (e *UnavailableError) Unwrap() []error { return []error{ErrNotSupported, e.Err} }

// MissingCapabilitiesError lists the KVM capabilities hlsvmm needs that the
// host's KVM lacks.
type MissingCapabilitiesError struct {
	Missing []string // kernel names, KVM_CAP_*
}

func (e *MissingCapabilitiesError) Error() string {
	return fmt.Sprintf("KVM lacks %s: hlsvmm needs an x86-64 Linux host kernel 4.11 or newer with the in-kernel irqchip",
		strings.Join(e.Missing, ", "))
}

func (e *MissingCapabilitiesError) Unwrap() error { return ErrNotSupported }

// APIVersionError reports a /dev/kvm speaking an API other than 12.
type APIVersionError struct {
	Got int
}

func (e *APIVersionError) Error() string {
	return fmt.Sprintf("KVM API version %d, hlsvmm speaks version 12", e.Got)
}

func (e *APIVersionError) Unwrap() error { return ErrNotSupported }

// BackendError reports a KVM whose backend cannot run a stock kernel.
type BackendError struct {
	Backend string
}

func (e *BackendError) Error() string {
	return fmt.Sprintf("/dev/kvm is provided by %s (PVM, KVM without hardware virtualization), which runs only "+
		"PVM-enabled guest kernels; hlsvmm boots stock kernels and needs kvm_intel or kvm_amd "+
		"(hardware virtualization, or nested virtualization on a VM host)", e.Backend)
}

func (e *BackendError) Unwrap() error { return ErrNotSupported }
