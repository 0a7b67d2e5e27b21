package vmm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMissingDevice(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "kvm"))
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotSupported and ErrNotExist", err)
	}
	for _, want := range []string{"modprobe kvm_intel", "modprobe kvm_amd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("multi-line error %q", err)
	}
}

func TestOpenNotKVM(t *testing.T) {
	// /dev/null opens but is not KVM: the API-version ioctl fails.
	if _, err := Open("/dev/null"); err == nil {
		t.Fatal("/dev/null accepted as KVM")
	}
}

func TestUnavailablePermissionHint(t *testing.T) {
	err := &UnavailableError{Path: "/dev/kvm", Err: fs.ErrPermission}
	if !strings.Contains(err.Error(), "group kvm") || !errors.Is(err, ErrNotSupported) {
		t.Fatalf("%v", err)
	}
}

func TestBackendDetection(t *testing.T) {
	dir := t.TempDir()
	if b := backendIn(dir); b != "" {
		t.Fatalf("empty sysfs: %q", b)
	}
	os.Mkdir(filepath.Join(dir, "kvm_pvm"), 0o755)
	if b := backendIn(dir); b != BackendPVM {
		t.Fatalf("got %q, want kvm_pvm", b)
	}
	os.Mkdir(filepath.Join(dir, "kvm_amd"), 0o755)
	if b := backendIn(dir); b != BackendAMD {
		t.Fatalf("got %q: hardware virtualization must win", b)
	}
	if !errors.Is(&BackendError{Backend: BackendPVM}, ErrNotSupported) {
		t.Fatal("BackendError is not ErrNotSupported")
	}
}

func TestMissingCapabilitiesError(t *testing.T) {
	err := &MissingCapabilitiesError{Missing: []string{"KVM_CAP_IRQFD", "KVM_CAP_IOEVENTFD"}}
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "KVM_CAP_IRQFD, KVM_CAP_IOEVENTFD") {
		t.Fatalf("%v", err)
	}
}
