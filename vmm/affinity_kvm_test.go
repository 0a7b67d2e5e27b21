//go:build kvmtest

package vmm

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A running vCPU's thread has the affinity it was given.
func TestKVMVCPUAffinity(t *testing.T) {
	vm := newTestVM(t, openKVM(t))
	c := realModeVCPU(t, vm, []byte{0xba, 0x00, 0x06, 0xee, 0xeb, 0xfd}) // mov dx, 0x600; out dx, al; jmp back to out
	want := cpuSet(firstCPU(allowedCPUs(t)))
	r := newRunner(vm, []*VCPU{c}, nil)
	r.affinity = []unix.CPUSet{want}
	type result struct {
		got unix.CPUSet
		err error
	}
	ch := make(chan result, 1)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		defer cancel(errors.New("test over"))
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			c.kickMu.Lock()
			tid := c.tid
			c.kickMu.Unlock()
			if tid != 0 {
				var res result
				res.err = unix.SchedGetaffinity(tid, &res.got)
				ch <- res
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		ch <- result{err: errors.New("the vCPU thread never started")}
	}()
	if s := r.run(ctx); s.Kind != StopHost {
		t.Fatalf("stop %+v", s)
	}
	res := <-ch
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.got != want {
		t.Errorf("vCPU thread affinity %s, want %s", cpuList(res.got), cpuList(want))
	}
}
