// Package exits counts a vCPU's KVM exits by reason. It is the only part of
// the metrics that sits on a hot path: the run loop calls Add once per
// KVM_RUN return, which is one bounds check and one atomic add into a fixed
// array (no maps, no locks). The exporter reads the counters with Snapshot.
//
// It imports nothing but the kernel ABI names so that vmm can depend on it
// without pulling in the Prometheus client.
package exits

import (
	"fmt"
	"sync/atomic"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
)

// Slots is the number of counters: exit reasons 0..Slots-2 are counted
// each on their own, anything at or above Other (reasons newer kernels
// may add) shares the last slot.
const Slots = 64

// Other is the slot shared by exit reasons too large to have their own.
const Other = Slots - 1

// Counters are one vCPU's exit counts. The zero value is ready. Give each
// vCPU its own: they are written by that vCPU's thread and read by the
// exporter at any time.
type Counters struct {
	n [Slots]atomic.Uint64
}

// Add counts one exit with KVM's reason code (kvm_run.exit_reason).
func (c *Counters) Add(reason uint32) {
	if reason >= Other {
		reason = Other
	}
	c.n[reason].Add(1)
}

// Snapshot is a plain copy of Counters, indexed by exit reason (Other for
// the shared slot).
type Snapshot [Slots]uint64

// Snapshot reads every counter (each atomically, not all at one instant).
func (c *Counters) Snapshot() Snapshot {
	var s Snapshot
	for i := range c.n {
		s[i] = c.n[i].Load()
	}
	return s
}

// ReasonName is the metric label for slot i: the kernel's KVM_EXIT_ name
// in lower case without the prefix ("io", "mmio", "hlt"), "other" for the
// shared slot, "reason_N" for a reason this build has no name for.
func ReasonName(i int) string {
	switch i {
	case uapi.KVM_EXIT_UNKNOWN:
		return "unknown"
	case uapi.KVM_EXIT_EXCEPTION:
		return "exception"
	case uapi.KVM_EXIT_IO:
		return "io"
	case uapi.KVM_EXIT_HYPERCALL:
		return "hypercall"
	case uapi.KVM_EXIT_DEBUG:
		return "debug"
	case uapi.KVM_EXIT_HLT:
		return "hlt"
	case uapi.KVM_EXIT_MMIO:
		return "mmio"
	case uapi.KVM_EXIT_IRQ_WINDOW_OPEN:
		return "irq_window_open"
	case uapi.KVM_EXIT_SHUTDOWN:
		return "shutdown"
	case uapi.KVM_EXIT_FAIL_ENTRY:
		return "fail_entry"
	case uapi.KVM_EXIT_INTR:
		return "intr"
	case uapi.KVM_EXIT_SET_TPR:
		return "set_tpr"
	case uapi.KVM_EXIT_TPR_ACCESS:
		return "tpr_access"
	case uapi.KVM_EXIT_NMI:
		return "nmi"
	case uapi.KVM_EXIT_INTERNAL_ERROR:
		return "internal_error"
	case uapi.KVM_EXIT_SYSTEM_EVENT:
		return "system_event"
	case uapi.KVM_EXIT_IOAPIC_EOI:
		return "ioapic_eoi"
	case uapi.KVM_EXIT_HYPERV:
		return "hyperv"
	case uapi.KVM_EXIT_X86_RDMSR:
		return "x86_rdmsr"
	case uapi.KVM_EXIT_X86_WRMSR:
		return "x86_wrmsr"
	case uapi.KVM_EXIT_X86_BUS_LOCK:
		return "x86_bus_lock"
	case uapi.KVM_EXIT_NOTIFY:
		return "notify"
	case Other:
		return "other"
	}
	return fmt.Sprintf("reason_%d", i)
}
