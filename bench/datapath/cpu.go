package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which Linux fixes at 100
// for userspace on every architecture hlsvmm runs on (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// ErrStat marks a /proc/PID/stat that does not parse.
var ErrStat = errors.New("malformed /proc stat")

// ParseStat returns utime+stime from the contents of /proc/PID/stat. The command name (field 2)
// may hold spaces and parentheses, so fields are counted after its last ')'.
func ParseStat(b []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("%w: no command name", ErrStat)
	}
	// After ")": field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
	f := bytes.Fields(b[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: %d fields after the command name, want at least 13", ErrStat, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: utime/stime %q", ErrStat, s)
		}
		ticks += v
	}
	if ticks > uint64(1<<62)/uint64(time.Second/userHZ) {
		return 0, fmt.Errorf("%w: %d ticks out of range", ErrStat, ticks)
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

// procCPU reads the utime+stime of process pid under proc (normally /proc).
func procCPU(proc string, pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	d, err := ParseStat(b)
	if err != nil {
		return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
	}
	return d, nil
}

// cpuSample is the CPU time of a VMM and of the vhost-PID kernel threads serving it.
type cpuSample struct {
	vmm   time.Duration
	vhost map[int]time.Duration // by thread id
}

// sampleCPU reads the VMM's CPU time and that of every process named vhost-TID for a thread
// TID of the VMM (the vhost kernel workers of kernels before 6.4, which are not threads of the
// VMM and are named after the thread that issued VHOST_SET_OWNER, not always the main one;
// later kernels make them VMM threads, counted in vmm and not listed under /proc as processes).
func sampleCPU(proc string, pid int) (cpuSample, error) {
	vmm, err := procCPU(proc, pid)
	if err != nil {
		return cpuSample{}, err
	}
	s := cpuSample{vmm: vmm, vhost: map[int]time.Duration{}}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return cpuSample{}, fmt.Errorf("list processes for vhost workers: %w", err)
	}
	want := map[string]bool{"vhost-" + strconv.Itoa(pid): true}
	if tasks, err := os.ReadDir(filepath.Join(proc, strconv.Itoa(pid), "task")); err == nil {
		for _, t := range tasks {
			want["vhost-"+t.Name()] = true
		}
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || tid == pid {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		if err != nil || !want[string(bytes.TrimSuffix(comm, []byte("\n")))] {
			continue // gone meanwhile, or another process
		}
		if d, err := procCPU(proc, tid); err == nil {
			s.vhost[tid] = d
		}
	}
	return s, nil
}

// cpuDelta is what was spent between two samples: by the VMM, and by vhost workers (a worker
// that appeared in between counts from zero).
func cpuDelta(before, after cpuSample) (vmm, vhost time.Duration, workers int) {
	for tid, d := range after.vhost {
		vhost += d - before.vhost[tid]
	}
	return after.vmm - before.vmm, vhost, len(after.vhost)
}
