//go:build kvmtest

// Tests against a real /dev/kvm. They are built only with -tags kvmtest and
// run in the test bed by tests/vmm/kvm.sh; there a KVM that cannot run
// hlsvmm is a failure, never a skip.

package vmm

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
	"golang.org/x/sys/unix"
)

func openKVM(t *testing.T) *System {
	t.Helper()
	s, err := Open("")
	if err != nil {
		t.Fatalf("this test needs a usable /dev/kvm (run it with tests/vmm/kvm.sh in the test bed): %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTestVM(t *testing.T, s *System) *VM {
	t.Helper()
	mem, err := memory.New(2 << 20)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := NewVM(s, mem)
	if err != nil {
		mem.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close(); mem.Close() })
	return vm
}

func TestKVMSystem(t *testing.T) {
	s := openKVM(t)
	if s.APIVersion() != 12 || s.MaxVCPUs() < 1 || s.VCPUMmapSize() < 4096 {
		t.Fatalf("API %d, max vCPUs %d, mmap size %d", s.APIVersion(), s.MaxVCPUs(), s.VCPUMmapSize())
	}
	cpuid, err := s.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if !cpuid.HasKVMLeaves() || cpuid.Find(1, 0) == nil {
		t.Fatalf("supported CPUID (%d entries) lacks leaf 1 or the KVM leaves", len(cpuid))
	}
	// Every vCPU's patched CPUID is accepted by KVM_SET_CPUID2.
	vm := newTestVM(t, s)
	for i := range 2 {
		c, err := vm.NewVCPU(i)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := configureVCPU(c, cpuid, Topology{APICID: uint32(i), CPUs: 2}); err != nil {
			t.Fatalf("vCPU %d: %v", i, err)
		}
	}
}

func TestKVMRoutesAndEventFDs(t *testing.T) {
	vm := newTestVM(t, openKVM(t))
	var gsis []uint32
	for i := range 3 {
		gsi, err := vm.AddMSIRoute(0xfee00000, 0x4030+uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		gsis = append(gsis, gsi)
	}
	if gsis[0] != FirstMSIGSI || gsis[2] != FirstMSIGSI+2 {
		t.Fatalf("GSIs %v", gsis)
	}
	if err := vm.UpdateMSIRoute(gsis[1], 0xfee01000, 0x4041); err != nil {
		t.Fatal(err)
	}
	if err := vm.RemoveRoute(gsis[0]); err != nil {
		t.Fatal(err)
	}
	if err := vm.RemoveRoute(gsis[0]); !errors.Is(err, ErrNoSuchRoute) {
		t.Fatalf("removing twice: %v", err)
	}
	if err := vm.RemoveRoute(4); !errors.Is(err, ErrNoSuchRoute) {
		t.Fatalf("removing an irqchip route: %v", err)
	}

	e, err := eventfd.New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := vm.AttachIRQFD(e, gsis[1]); err != nil {
		t.Fatal(err)
	}
	if err := vm.AttachIRQFD(e, gsis[1]); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("attaching the same irqfd twice: %v, want EBUSY", err)
	}
	if err := e.Signal(); err != nil {
		t.Fatal(err)
	}
	if err := vm.DetachIRQFD(e, gsis[1]); err != nil {
		t.Fatal(err)
	}
	if err := vm.AttachIOEventFD(e, 0xe0000000, 4); err != nil {
		t.Fatal(err)
	}
	if err := vm.AttachIOEventFD(e, 0xe0000000, 4); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("attaching the same ioeventfd twice: %v, want EEXIST", err)
	}
	if err := vm.DetachIOEventFD(e, 0xe0000000, 4); err != nil {
		t.Fatal(err)
	}
	if err := vm.DetachIOEventFD(e, 0xe0000000, 4); err == nil {
		t.Fatal("detaching twice succeeded")
	}
	if err := vm.SignalMSI(0xfee00000, 0x4031); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetIRQLine(4, true); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetIRQLine(4, false); err != nil {
		t.Fatal(err)
	}
}

// guestDevice records the bytes the test program writes to its ports and
// stops the runner when port 2 is written.
type guestDevice struct {
	mu   sync.Mutex
	got  bytes.Buffer
	stop func()
}

func (d *guestDevice) Read(off uint64, data []byte) {}
func (d *guestDevice) Write(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == 2 {
		d.stop()
		return
	}
	d.got.Write(data)
}

// realModeVCPU creates vCPU 0 executing code at guest address 0x1000 in
// real mode.
func realModeVCPU(t *testing.T, vm *VM, code []byte) *VCPU {
	t.Helper()
	dst, err := vm.Memory().Slice(0x1000, uint64(len(code)))
	if err != nil {
		t.Fatal(err)
	}
	copy(dst, code)
	c, err := vm.NewVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sregs, err := c.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	sregs.DS.Base, sregs.DS.Selector = 0, 0
	if err := c.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRegs(uapi.KvmRegs{RIP: 0x1000, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKVMRunLoop(t *testing.T) {
	vm := newTestVM(t, openKVM(t))
	code := []byte{
		0xbe, 0x00, 0x11, // mov si, 0x1100
		0xb9, 0x05, 0x00, // mov cx, 5
		0xba, 0x00, 0x05, // mov dx, 0x500
		0xfc,       // cld
		0xf3, 0x6e, // rep outsb: one exit with count 5 (or several)
		0xba, 0x00, 0x06, // mov dx, 0x600 (nobody there)
		0xec,             // in al, dx
		0xba, 0x01, 0x05, // mov dx, 0x501
		0xee,             // out dx, al: all-ones expected
		0xba, 0x02, 0x05, // mov dx, 0x502
		0xee,       // out dx, al: stop
		0xfb, 0xf4, // sti; hlt (never a tight loop: nested SVM under TCG can starve L1 on one)
		0xeb, 0xfc, // jmp back to sti
	}
	prog := append(code, make([]byte, 0x100-len(code))...)
	prog = append(prog, "hello"...)
	c := realModeVCPU(t, vm, prog)
	r := newRunner(vm, []*VCPU{c}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	dev := &guestDevice{stop: func() { r.stop(Stop{Kind: StopPoweroff, VCPU: -1, Reason: "test device"}) }}
	if err := vm.PIO().Register(0x500, 3, dev); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := r.run(ctx)
	if s.Kind != StopPoweroff || s.Reason != "test device" {
		t.Fatalf("stop %+v", s)
	}
	if got := dev.got.String(); got != "hello\xff" {
		t.Fatalf("device saw %q, want \"hello\\xff\"", got)
	}
}

func TestKVMStopKicksBusyVCPU(t *testing.T) {
	vm := newTestVM(t, openKVM(t))
	// A vCPU that never stops exiting: out to an unclaimed port, forever.
	c := realModeVCPU(t, vm, []byte{0xba, 0x00, 0x06, 0xee, 0xeb, 0xfd}) // mov dx, 0x600; out dx, al; jmp back to out
	r := newRunner(vm, []*VCPU{c}, nil)
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(300*time.Millisecond, func() { cancel(errors.New("test over")) })
	start := time.Now()
	s := r.run(ctx)
	if s.Kind != StopHost || s.Reason != "test over" {
		t.Fatalf("stop %+v", s)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("stopping took %v", d)
	}
}

func TestKVMHaltedGuestIsPoweroff(t *testing.T) {
	vm := newTestVM(t, openKVM(t))
	c := realModeVCPU(t, vm, []byte{0xfa, 0xf4, 0xeb, 0xfc}) // cli; hlt; jmp back
	r := newRunner(vm, []*VCPU{c}, nil)
	r.haltCheck = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := r.run(ctx)
	if s.Kind != StopPoweroff {
		t.Fatalf("stop %+v, want poweroff by the halt watcher", s)
	}
}

// An idle vCPU (halted with interrupts enabled) is blocked inside KVM_RUN:
// it is not taken for a powered-off guest, and the host's stop kicks it out.
func TestKVMHaltWithInterruptsOnIsNotPoweroff(t *testing.T) {
	vm := newTestVM(t, openKVM(t))
	c := realModeVCPU(t, vm, []byte{0xfb, 0xf4, 0xeb, 0xfc}) // sti; hlt; jmp back: idle, not dead
	r := newRunner(vm, []*VCPU{c}, nil)
	r.haltCheck = 100 * time.Millisecond
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(2*time.Second, func() { cancel(errors.New("idle long enough")) })
	if s := r.run(ctx); s.Kind != StopHost {
		t.Fatalf("stop %+v: an idle guest was taken for powered off", s)
	}
}
