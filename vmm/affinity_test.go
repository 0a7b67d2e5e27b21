package vmm

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func cpuSet(cpus ...int) unix.CPUSet {
	var s unix.CPUSet
	for _, c := range cpus {
		s.Set(c)
	}
	return s
}

func allowedCPUs(t *testing.T) unix.CPUSet {
	t.Helper()
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(0, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func firstCPU(s unix.CPUSet) int {
	for c := 0; c < len(s)*64; c++ {
		if s.IsSet(c) {
			return c
		}
	}
	return -1
}

func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		s    unix.CPUSet
		want string
	}{
		{cpuSet(), "none"},
		{cpuSet(0), "0"},
		{cpuSet(0, 1, 2, 3), "0-3"},
		{cpuSet(0, 2, 3, 4, 7, 9, 10), "0,2-4,7,9-10"},
		{cpuSet(63, 64, 1023), "63-64,1023"},
	} {
		if got := cpuList(tc.s); got != tc.want {
			t.Errorf("cpuList = %q, want %q", got, tc.want)
		}
	}
}

func TestCheckAffinity(t *testing.T) {
	allowed := allowedCPUs(t)
	cpu := firstCPU(allowed)
	outside := -1
	for c := 0; c < len(allowed)*64; c++ {
		if !allowed.IsSet(c) {
			outside = c
			break
		}
	}
	if err := checkAffinity(nil, 4); err != nil {
		t.Errorf("no affinity: %v", err)
	}
	if err := checkAffinity([]unix.CPUSet{cpuSet(cpu), allowed}, 2); err != nil {
		t.Errorf("allowed CPUs: %v", err)
	}
	for _, tc := range []struct {
		name  string
		sets  []unix.CPUSet
		vcpus int
		msg   string
	}{
		{"too few sets", []unix.CPUSet{cpuSet(cpu)}, 2, "1 CPU sets for 2 vCPUs"},
		{"too many sets", []unix.CPUSet{cpuSet(cpu), cpuSet(cpu)}, 1, "2 CPU sets for 1 vCPUs"},
		{"empty set", []unix.CPUSet{cpuSet(cpu), {}}, 2, "vCPU 1: empty CPU set"},
		{"outside", []unix.CPUSet{cpuSet(cpu, outside)}, 1, "not among those this process may use"},
	} {
		err := checkAffinity(tc.sets, tc.vcpus)
		if !errors.Is(err, ErrAffinity) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want ErrAffinity mentioning %q", tc.name, err, tc.msg)
		}
	}
}

// pinThread binds the locked thread and nothing else: the thread dies with
// its goroutine, which never unlocks it.
func TestPinThread(t *testing.T) {
	allowed := allowedCPUs(t)
	want := cpuSet(firstCPU(allowed))
	type result struct {
		got unix.CPUSet
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the pinned thread exits with the goroutine
		var r result
		if r.err = pinThread(want); r.err == nil {
			r.err = unix.SchedGetaffinity(0, &r.got)
		}
		ch <- r
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.got != want {
		t.Errorf("thread affinity %s, want %s", cpuList(r.got), cpuList(want))
	}
	if after := allowedCPUs(t); after != allowed {
		t.Errorf("test goroutine's thread affinity changed to %s", cpuList(after))
	}
	err := pinThread(unix.CPUSet{})
	if !errors.Is(err, unix.EINVAL) {
		t.Errorf("pin to no CPU: %v, want EINVAL", err)
	}
}

// A vCPU thread that cannot be pinned stops the machine before KVM_RUN;
// one that can goes on to KVM_RUN (which fails on the fake vCPU's fd -1).
func TestRunnerPinsVCPUThread(t *testing.T) {
	if runtime.NumCPU() >= 1024 {
		t.Skip("needs a host CPU number that does not exist")
	}
	c := fakeVCPU(t)
	r := newRunner(nil, []*VCPU{c}, nil)
	r.haltCheck = 0
	r.affinity = []unix.CPUSet{cpuSet(1023)}
	s := r.run(context.Background())
	if s.Kind != StopFatal || s.VCPU != c.id || !strings.Contains(s.Reason, "pin the vCPU thread") || !errors.Is(s.Err, unix.EINVAL) {
		t.Fatalf("stop %+v, want a fatal stop about pinning with EINVAL", s)
	}

	c = fakeVCPU(t)
	r = newRunner(nil, []*VCPU{c}, nil)
	r.haltCheck = 0
	r.affinity = []unix.CPUSet{cpuSet(firstCPU(allowedCPUs(t)))}
	s = r.run(context.Background())
	if s.Kind != StopFatal || !strings.HasPrefix(s.Reason, "KVM_RUN") {
		t.Fatalf("stop %+v, want the fake vCPU's KVM_RUN failure after pinning", s)
	}
}
