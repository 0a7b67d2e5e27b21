package vmm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/vmm/bus"
	"golang.org/x/sys/unix"
)

// kickSignal interrupts a vCPU thread blocked in KVM_RUN. It is a real-time
// signal nothing else in a Go program uses; Go's handler is installed for it
// (signal.Notify) so it neither kills the process nor is discarded.
const kickSignal = unix.Signal(40)

// StopKind says why a machine stopped.
type StopKind int

const (
	// StopPoweroff: the guest powered off (or halted for good).
	StopPoweroff StopKind = iota + 1
	// StopReset: the guest asked for a reset (i8042 pulse, KVM reset event,
	// triple fault: Linux's reboot=t, which NixOS guests may use).
	StopReset
	// StopHost: the host asked (signal, context cancelled).
	StopHost
	// StopFatal: a vCPU cannot continue (entry failure,
	// internal error, unhandled exit).
	StopFatal
)

func (k StopKind) String() string {
	switch k {
	case StopPoweroff:
		return "poweroff"
	case StopReset:
		return "reset"
	case StopHost:
		return "stopped by host"
	case StopFatal:
		return "fatal"
	}
	return fmt.Sprintf("StopKind(%d)", int(k))
}

// Stop is why a machine's vCPUs stopped.
type Stop struct {
	Kind   StopKind
	VCPU   int    // the vCPU that stopped the machine, -1 if none did
	Reason string // what happened, for people
	Regs   string // register dump of VCPU for fatal stops
	Err    error  // the underlying error, if any
}

func (s Stop) String() string {
	if s.VCPU >= 0 {
		return fmt.Sprintf("%s on vCPU %d: %s", s.Kind, s.VCPU, s.Reason)
	}
	return fmt.Sprintf("%s: %s", s.Kind, s.Reason)
}

// accessLog remembers which unclaimed ports and MMIO pages the guest
// touched so each is logged once. The guest chooses the addresses, so the
// set is bounded: past maxLoggedAccesses distinct addresses, one last line
// says so and later ones go unlogged.
type accessLog struct {
	mu   sync.Mutex
	seen map[uint64]bool
	full bool
	log  *slog.Logger
}

const maxLoggedAccesses = 1024

func newAccessLog(log *slog.Logger) *accessLog {
	return &accessLog{seen: make(map[uint64]bool), log: log}
}

const (
	accessKeyPIO  = 1 << 63
	accessKeyMMIO = 0
)

func (a *accessLog) note(space string, key, addr uint64, write bool, size int) {
	a.mu.Lock()
	first, overflow := false, false
	switch {
	case a.seen[key] || a.full:
	case len(a.seen) >= maxLoggedAccesses:
		a.full, overflow = true, true
	default:
		a.seen[key], first = true, true
	}
	a.mu.Unlock()
	if a.log == nil {
		return
	}
	if first {
		a.log.Debug("guest access to unclaimed address (reads return all-ones, writes are ignored; logged once)",
			"space", space, "addr", fmt.Sprintf("%#x", addr), "write", write, "size", size)
	}
	if overflow {
		a.log.Debug("more than 1024 distinct unclaimed addresses touched; no longer logging them")
	}
}

// handleExit acts on the exit KVM_RUN just reported in c.run and says
// whether the vCPU keeps running; if not, stop says why.
func (c *VCPU) handleExit(pio, mmio *bus.Bus, unclaimed *accessLog) (stop *Stop) {
	fatal := func(format string, args ...any) *Stop {
		return &Stop{Kind: StopFatal, VCPU: c.id, Reason: fmt.Sprintf(format, args...)}
	}
	switch r := c.run.ExitReason; r {
	case uapi.KVM_EXIT_IO:
		io := c.run.IO()
		size, count, off := int(io.Size), int(io.Count), io.DataOffset
		if size != 1 && size != 2 && size != 4 || count < 1 ||
			off > uint64(len(c.mapping)) || uint64(size*count) > uint64(len(c.mapping))-off {
			return fatal("malformed I/O exit: port %#x size %d count %d data offset %#x", io.Port, size, count, off)
		}
		port := uint64(io.Port)
		for i := range count {
			data := c.mapping[int(off)+i*size : int(off)+(i+1)*size]
			if io.Direction == uapi.KVM_EXIT_IO_OUT {
				if !pio.Write(port, data) {
					unclaimed.note("pio", accessKeyPIO|port, port, true, size)
				}
			} else if !pio.Read(port, data) {
				fillOnes(data)
				unclaimed.note("pio", accessKeyPIO|port, port, false, size)
			}
		}
		return nil
	case uapi.KVM_EXIT_MMIO:
		m := c.run.MMIO()
		n := int(m.Len)
		if n < 1 || n > len(m.Data) {
			return fatal("malformed MMIO exit: address %#x length %d", m.PhysAddr, n)
		}
		data := m.Data[:n]
		if m.IsWrite != 0 {
			if !mmio.Write(m.PhysAddr, data) {
				unclaimed.note("mmio", accessKeyMMIO|m.PhysAddr>>12, m.PhysAddr, true, n)
			}
		} else if !mmio.Read(m.PhysAddr, data) {
			fillOnes(data)
			unclaimed.note("mmio", accessKeyMMIO|m.PhysAddr>>12, m.PhysAddr, false, n)
		}
		return nil
	case uapi.KVM_EXIT_INTR, uapi.KVM_EXIT_IRQ_WINDOW_OPEN:
		return nil
	case uapi.KVM_EXIT_HLT:
		// Only without an in-kernel local APIC; a halted CPU with nothing
		// to wake it is the end.
		return &Stop{Kind: StopPoweroff, VCPU: c.id, Reason: "vCPU halted (KVM_EXIT_HLT)"}
	case uapi.KVM_EXIT_SHUTDOWN:
		// A triple fault resets a PC; Linux reboots this way with reboot=t.
		// hlsvmm does not restart guests, so it is a reset like the i8042's.
		return &Stop{Kind: StopReset, VCPU: c.id, Reason: "triple fault (KVM_EXIT_SHUTDOWN): guest reset"}
	case uapi.KVM_EXIT_FAIL_ENTRY:
		fe := c.run.FailEntry()
		return fatal("VM entry failed (KVM_EXIT_FAIL_ENTRY): hardware reason %#x on host CPU %d",
			fe.HardwareEntryFailureReason, fe.CPU)
	case uapi.KVM_EXIT_INTERNAL_ERROR:
		ie := c.run.Internal()
		return fatal("KVM internal error (KVM_EXIT_INTERNAL_ERROR): %s, data %#x",
			internalErrorName(ie.Suberror), ie.Data[:min(int(ie.Ndata), len(ie.Data))])
	case uapi.KVM_EXIT_SYSTEM_EVENT:
		ev := c.run.SystemEvent()
		switch ev.Type {
		case uapi.KVM_SYSTEM_EVENT_SHUTDOWN:
			return &Stop{Kind: StopPoweroff, VCPU: c.id, Reason: "guest shutdown (KVM_SYSTEM_EVENT_SHUTDOWN)"}
		case uapi.KVM_SYSTEM_EVENT_RESET:
			return &Stop{Kind: StopReset, VCPU: c.id, Reason: "guest reset (KVM_SYSTEM_EVENT_RESET)"}
		case uapi.KVM_SYSTEM_EVENT_CRASH:
			return fatal("guest crash (KVM_SYSTEM_EVENT_CRASH)")
		}
		return fatal("unhandled system event type %d", ev.Type)
	case uapi.KVM_EXIT_UNKNOWN:
		return fatal("unknown exit (KVM_EXIT_UNKNOWN): hardware reason %#x", c.run.Hw().HardwareExitReason)
	case uapi.KVM_EXIT_EXCEPTION:
		ex := c.run.Ex()
		return fatal("unhandled exception %d error code %#x (KVM_EXIT_EXCEPTION)", ex.Exception, ex.ErrorCode)
	default:
		return fatal("unhandled exit reason %d", r)
	}
}

func fillOnes(b []byte) {
	for i := range b {
		b[i] = 0xff
	}
}

func internalErrorName(sub uint32) string {
	switch sub {
	case uapi.KVM_INTERNAL_ERROR_EMULATION:
		return "instruction emulation failed"
	case uapi.KVM_INTERNAL_ERROR_SIMUL_EX:
		return "simultaneous exceptions"
	case uapi.KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "exit while delivering an event"
	case uapi.KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON:
		return "unexpected exit reason"
	}
	return fmt.Sprintf("suberror %d", sub)
}

// runner drives a set of vCPUs on their own OS threads until one of them,
// a device or the host stops the machine.
type runner struct {
	vm        *VM
	vcpus     []*VCPU
	log       *slog.Logger
	unclaimed *accessLog
	// affinity, if not empty, holds the host CPUs of each vCPU's thread,
	// indexed like vcpus.
	affinity []unix.CPUSet

	// haltCheck is how often the vCPUs are sampled for a guest that
	// halted for good; 0 disables the check.
	haltCheck time.Duration

	stopping atomic.Bool
	stopOnce sync.Once
	result   Stop
}

func newRunner(vm *VM, vcpus []*VCPU, log *slog.Logger) *runner {
	return &runner{vm: vm, vcpus: vcpus, log: log, unclaimed: newAccessLog(log), haltCheck: time.Second}
}

// stop records why the machine stops (the first caller wins) and kicks
// every vCPU out of KVM_RUN. Safe from any goroutine, any number of times.
func (r *runner) stop(s Stop) {
	r.stopOnce.Do(func() {
		r.result = s
		r.stopping.Store(true)
		for _, c := range r.vcpus {
			c.kick()
		}
	})
}

// run starts every vCPU and returns when all have stopped.
func (r *runner) run(ctx context.Context) Stop {
	// Go installs its handler for kickSignal only for Notify'd signals we
	// can rely on; the channel is never read (deliveries to a full
	// channel are dropped).
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, kickSignal)
	defer signal.Stop(sigc)

	var wg sync.WaitGroup
	for i, c := range r.vcpus {
		var pin *unix.CPUSet
		if len(r.affinity) > 0 {
			pin = &r.affinity[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s := r.loop(c, pin); s != nil {
				r.stop(*s)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if r.haltCheck > 0 {
		go r.watchHalt(done)
	}
	select {
	case <-done:
	case <-ctx.Done():
		r.stop(Stop{Kind: StopHost, VCPU: -1, Reason: context.Cause(ctx).Error(), Err: context.Cause(ctx)})
		<-done
	}
	r.stop(Stop{Kind: StopFatal, VCPU: -1, Reason: "all vCPUs ended without a reason"})
	return r.result
}

// loop is one vCPU's thread: KVM_RUN until the machine stops or this vCPU
// cannot go on. A non-nil pin is the host CPUs the thread may run on.
func (r *runner) loop(c *VCPU, pin *unix.CPUSet) *Stop {
	// The thread stays locked (and dies with the goroutine): its signal
	// mask is changed below.
	runtime.LockOSThread()
	if pin != nil {
		if err := pinThread(*pin); err != nil {
			return &Stop{Kind: StopFatal, VCPU: c.id, Reason: fmt.Sprintf("pin the vCPU thread: %v", err), Err: err}
		}
	}
	var set unix.Sigset_t
	sigaddset(&set, kickSignal)
	if err := unix.PthreadSigmask(unix.SIG_UNBLOCK, &set, nil); err != nil {
		return &Stop{Kind: StopFatal, VCPU: c.id, Reason: "unblock the kick signal", Err: err}
	}
	// Name the thread after its vCPU (top -H, /proc/PID/task/*/comm), so
	// the time the guest runs on it can be told from the VMM's own work.
	if err := setThreadName(fmt.Sprintf("vcpu%d", c.id)); err != nil && r.log != nil {
		r.log.Debug("name vCPU thread", "vcpu", c.id, "err", err)
	}
	c.kickMu.Lock()
	c.tid = unix.Gettid()
	c.kickMu.Unlock()
	defer func() {
		c.kickMu.Lock()
		c.tid = 0
		c.kickMu.Unlock()
	}()

	defer func() {
		if r.log != nil && r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("vCPU stopped", "vcpu", c.id, "state", c.DumpRegisters())
		}
	}()
	for !r.stopping.Load() {
		if c.sampleReq.Swap(false) {
			c.sample.Store(int32(c.haltState()))
		}
		_, err := uapi.Ioctl(c.fd, uapi.KVM_RUN, 0)
		switch {
		case err == nil:
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			// Kicked, or an AP woken without a SIPI: check stopping.
			continue
		default:
			return &Stop{Kind: StopFatal, VCPU: c.id, Reason: fmt.Sprintf("KVM_RUN: %v", err), Err: err,
				Regs: c.DumpRegisters()}
		}
		c.exits.Add(c.run.ExitReason)
		if s := c.handleExit(r.vm.PIO(), r.vm.MMIO(), r.unclaimed); s != nil {
			if s.Kind == StopFatal {
				s.Regs = c.DumpRegisters()
			}
			return s
		}
	}
	return nil
}

// kick makes the vCPU leave KVM_RUN (or not enter it again): immediate_exit
// covers the window before the ioctl, the signal interrupts a running or
// halted vCPU.
func (c *VCPU) kick() {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	if c.run != nil {
		c.run.ImmediateExit = 1
	}
	if c.tid != 0 {
		unix.Tgkill(unix.Getpid(), c.tid, kickSignal)
	}
}

// A guest without ACPI cannot power off: Linux's `poweroff` and `halt` end
// with every CPU in HLT with interrupts disabled, which the in-kernel LAPIC
// handles without ever exiting to hlsvmm. The runner therefore samples the
// vCPUs now and then (a signal makes KVM_RUN return; the vCPU reports and
// re-enters) and treats "every started vCPU halted with IF clear, twice in
// a row" as the guest having powered off.

// haltState values a vCPU reports when sampled.
type haltState int32

const (
	haltUnknown    haltState = iota // not reported yet
	haltLive                        // running, or halted with interrupts enabled
	haltDead                        // halted with interrupts disabled: only NMI/INIT could wake it
	haltNotStarted                  // an AP that never received its SIPI
)

const rflagsIF = 1 << 9

func (c *VCPU) haltState() haltState {
	mp, err := c.MPState()
	if err != nil {
		return haltLive
	}
	switch mp {
	case uapi.KVM_MP_STATE_UNINITIALIZED:
		return haltNotStarted
	case uapi.KVM_MP_STATE_HALTED:
		regs, err := c.Regs()
		if err == nil && regs.RFLAGS&rflagsIF == 0 {
			return haltDead
		}
	}
	return haltLive
}

// guestHalted samples every vCPU and reports whether the guest can never
// run again.
func (r *runner) guestHalted() bool {
	for _, c := range r.vcpus {
		c.sample.Store(int32(haltUnknown))
		c.sampleReq.Store(true)
		c.signal()
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	states := make([]haltState, len(r.vcpus))
	for {
		for i, c := range r.vcpus {
			states[i] = haltState(c.sample.Load())
		}
		if known, halted := haltVerdict(states); known {
			return halted
		}
		if time.Now().After(deadline) || r.stopping.Load() {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// haltVerdict decides from the vCPUs' reports: known is false while a
// report that could still change the answer is missing; halted is true
// when no vCPU can run again and at least one halted with IF clear.
func haltVerdict(states []haltState) (known, halted bool) {
	dead, missing := 0, false
	for _, s := range states {
		switch s {
		case haltLive:
			return true, false
		case haltDead:
			dead++
		case haltUnknown:
			missing = true
		}
	}
	if missing {
		return false, false
	}
	return true, dead > 0
}

func (r *runner) watchHalt(done <-chan struct{}) {
	t := time.NewTicker(r.haltCheck)
	defer t.Stop()
	streak := 0
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if !r.guestHalted() {
			streak = 0
			continue
		}
		if streak++; streak >= 2 {
			r.stop(Stop{Kind: StopPoweroff, VCPU: -1,
				Reason: "the guest halted every vCPU with interrupts disabled (poweroff or halt without ACPI)"})
			return
		}
	}
}

// signal interrupts KVM_RUN on the vCPU's thread without asking it to stop.
func (c *VCPU) signal() {
	c.kickMu.Lock()
	defer c.kickMu.Unlock()
	if c.tid != 0 {
		unix.Tgkill(unix.Getpid(), c.tid, kickSignal)
	}
}

func sigaddset(set *unix.Sigset_t, sig unix.Signal) {
	n := uint(sig) - 1
	set.Val[n/64] |= 1 << (n % 64)
}

// setThreadName sets the calling OS thread's name (at most 15 bytes).
func setThreadName(name string) error {
	b := make([]byte, 16)
	copy(b[:15], name)
	return unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}
