package exits

import (
	"sync"
	"testing"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

func TestAddAndSnapshot(t *testing.T) {
	var c Counters
	c.Add(uapi.KVM_EXIT_IO)
	c.Add(uapi.KVM_EXIT_IO)
	c.Add(uapi.KVM_EXIT_MMIO)
	c.Add(Other - 1)
	c.Add(Other)
	c.Add(Other + 1)
	c.Add(^uint32(0))
	s := c.Snapshot()
	want := map[int]uint64{uapi.KVM_EXIT_IO: 2, uapi.KVM_EXIT_MMIO: 1, Other - 1: 1, Other: 3}
	for i, v := range s {
		if v != want[i] {
			t.Errorf("slot %d (%s) = %d, want %d", i, ReasonName(i), v, want[i])
		}
	}
}

func TestConcurrentReaders(t *testing.T) {
	var c Counters
	const n = 10000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range n {
			c.Add(uapi.KVM_EXIT_IO)
		}
	}()
	var last uint64
	for range 100 {
		v := c.Snapshot()[uapi.KVM_EXIT_IO]
		if v < last {
			t.Fatalf("counter went back from %d to %d", last, v)
		}
		last = v
	}
	wg.Wait()
	if v := c.Snapshot()[uapi.KVM_EXIT_IO]; v != n {
		t.Fatalf("io exits = %d, want %d", v, n)
	}
}

func TestReasonNames(t *testing.T) {
	seen := map[string]int{}
	for i := range Slots {
		name := ReasonName(i)
		if name == "" {
			t.Fatalf("slot %d has no name", i)
		}
		if j, dup := seen[name]; dup {
			t.Fatalf("slots %d and %d are both %q", j, i, name)
		}
		seen[name] = i
	}
	for i, want := range map[int]string{uapi.KVM_EXIT_IO: "io", uapi.KVM_EXIT_MMIO: "mmio", uapi.KVM_EXIT_HLT: "hlt", 40: "reason_40", Other: "other"} {
		if got := ReasonName(i); got != want {
			t.Errorf("ReasonName(%d) = %q, want %q", i, got, want)
		}
	}
}

// BenchmarkAdd is the cost the run loop pays per exit.
func BenchmarkAdd(b *testing.B) {
	var c Counters
	for i := 0; b.Loop(); i++ {
		c.Add(uint32(i & 7))
	}
}
