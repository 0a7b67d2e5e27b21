package vmm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// vCPU thread affinity. Pinning each vCPU's thread to host CPUs keeps the
// guest's caches and the host scheduler's choices stable (no migrations,
// warm L1/L2, a NUMA node of one's own) and lets the host keep other CPUs
// for vhost workers and the VMM's own threads. It trades the scheduler's
// freedom for that locality: a vCPU pinned to a CPU another busy thread
// also wants waits for it instead of moving, so pin to CPUs nothing else
// is pinned to.

// ErrAffinity is wrapped by errors about a vCPU affinity that cannot be
// applied: the wrong number of sets, an empty set, CPUs this process may
// not use.
var ErrAffinity = errors.New("invalid vCPU affinity")

// checkAffinity checks one CPU set per vCPU against the CPUs the process
// may run on (sched_getaffinity), before any thread is pinned. No sets at
// all means no pinning.
func checkAffinity(sets []unix.CPUSet, vcpus int) error {
	if len(sets) == 0 {
		return nil
	}
	if len(sets) != vcpus {
		return fmt.Errorf("%w: %d CPU sets for %d vCPUs: give one per vCPU", ErrAffinity, len(sets), vcpus)
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return fmt.Errorf("read this process's CPU affinity: %w", err)
	}
	for i, s := range sets {
		if s.Count() == 0 {
			return fmt.Errorf("%w: vCPU %d: empty CPU set", ErrAffinity, i)
		}
		var outside unix.CPUSet
		for k := range s {
			outside[k] = s[k] &^ allowed[k]
		}
		if outside.Count() != 0 {
			return fmt.Errorf("%w: vCPU %d: host CPUs %s are not among those this process may use (%s)",
				ErrAffinity, i, cpuList(outside), cpuList(allowed))
		}
	}
	return nil
}

// pinThread binds the calling OS thread, which must be locked to its
// goroutine, to the CPUs in set.
func pinThread(set unix.CPUSet) error {
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity to host CPUs %s: %w", cpuList(set), err)
	}
	return nil
}

// cpuList formats a CPU set the way the kernel's cpulist files do: "0-3,6".
func cpuList(s unix.CPUSet) string {
	var parts []string
	n := len(s) * 64
	for cpu := 0; cpu < n; cpu++ {
		if !s.IsSet(cpu) {
			continue
		}
		end := cpu
		for end+1 < n && s.IsSet(end+1) {
			end++
		}
		if end == cpu {
			parts = append(parts, strconv.Itoa(cpu))
		} else {
			parts = append(parts, strconv.Itoa(cpu)+"-"+strconv.Itoa(end))
		}
		cpu = end
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}
