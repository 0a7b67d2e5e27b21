package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/hlsvmm/hlsvmm/vmm"
)

// kvmUsable reports whether this host's /dev/kvm can run hlsvmm.
func kvmUsable() bool {
	s, err := vmm.Open("")
	if err != nil {
		return false
	}
	s.Close()
	return true
}

func TestProbeMissingDevice(t *testing.T) {
	code, msg, out := runApp(t, "probe", "--device", "/nonexistent/kvm")
	if code == 0 {
		t.Fatal("probe of a missing KVM device exited 0")
	}
	for _, want := range []string{"no such file", "modprobe kvm_intel", "modprobe kvm_amd"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.Contains(out, "NOT USABLE") {
		t.Errorf("report does not flag KVM:\n%s", out)
	}
}

func TestProbeJSON(t *testing.T) {
	code, _, out := runApp(t, "probe", "--json", "--device", "/nonexistent/kvm")
	if code == 0 {
		t.Fatal("exit 0")
	}
	var r probeReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if r.KVM.OK || r.KVM.Device != "/nonexistent/kvm" || !strings.Contains(r.KVM.Error, "no such file") {
		t.Errorf("kvm = %+v", r.KVM)
	}
	_, tunErr := os.Stat("/dev/net/tun")
	if r.Tun.OK != (tunErr == nil) && os.Getuid() == 0 {
		t.Errorf("tun ok=%v but stat says %v", r.Tun.OK, tunErr)
	}
}

// TestProbeThisHost: on the development and CI machines /dev/kvm is missing
// or PVM-only; probe must say so and fail. Where KVM is usable (the test
// bed), it must succeed and show the API version.
func TestProbeThisHost(t *testing.T) {
	code, msg, out := runApp(t, "probe")
	switch {
	case kvmUsable():
		if code != 0 || !strings.Contains(out, "API version  12") {
			t.Fatalf("usable KVM: exit %d %q\n%s", code, msg, out)
		}
	case vmm.Backend() == vmm.BackendPVM:
		if code == 0 || !strings.Contains(msg, "PVM") || !strings.Contains(msg, "kvm_amd") {
			t.Fatalf("PVM host: exit %d, error %q", code, msg)
		}
	default:
		if code == 0 || !strings.Contains(msg, "/dev/kvm") {
			t.Fatalf("no KVM: exit %d, error %q", code, msg)
		}
	}
}
