package vmm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/vmm/bus"
	"golang.org/x/sys/unix"
)

// fakeVCPU is a VCPU over a plain buffer laid out like the mmap'd area:
// kvm_run at 0, the port I/O data page at 4096 (KVM_PIO_PAGE_OFFSET).
func fakeVCPU(t *testing.T) *VCPU {
	t.Helper()
	words := make([]uint64, 2*4096/8)
	m := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 2*4096)
	return &VCPU{id: 1, fd: -1, mapping: m, run: (*uapi.KvmRun)(unsafe.Pointer(&m[0]))}
}

// recorder is a bus device that logs accesses and reads back a pattern.
type recorder struct {
	writes []string
	reads  int
}

func (r *recorder) Read(off uint64, data []byte) {
	r.reads++
	for i := range data {
		data[i] = byte(0xa0 + int(off) + i)
	}
}

func (r *recorder) Write(off uint64, data []byte) {
	r.writes = append(r.writes, string(data))
}

func quietLog() *accessLog { return newAccessLog(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))) }

func TestExitIOStringOut(t *testing.T) {
	c := fakeVCPU(t)
	var pio, mmio bus.Bus
	rec := &recorder{}
	pio.Register(0x3f8, 8, rec)
	c.run.ExitReason = uapi.KVM_EXIT_IO
	io := c.run.IO()
	*io = uapi.KvmRunIO{Direction: uapi.KVM_EXIT_IO_OUT, Size: 1, Port: 0x3f8, Count: 5, DataOffset: 4096}
	copy(c.mapping[4096:], "hello")
	if s := c.handleExit(&pio, &mmio, quietLog()); s != nil {
		t.Fatalf("stopped: %v", s)
	}
	if strings.Join(rec.writes, "") != "hello" || len(rec.writes) != 5 {
		t.Fatalf("rep outsb delivered %q", rec.writes)
	}
}

func TestExitIOStringIn(t *testing.T) {
	c := fakeVCPU(t)
	var pio, mmio bus.Bus
	rec := &recorder{}
	pio.Register(0x60, 4, rec)
	c.run.ExitReason = uapi.KVM_EXIT_IO
	*c.run.IO() = uapi.KvmRunIO{Direction: uapi.KVM_EXIT_IO_IN, Size: 2, Port: 0x62, Count: 3, DataOffset: 4096}
	if s := c.handleExit(&pio, &mmio, quietLog()); s != nil {
		t.Fatalf("stopped: %v", s)
	}
	if rec.reads != 3 || !bytes.Equal(c.mapping[4096:4102], []byte{0xa2, 0xa3, 0xa2, 0xa3, 0xa2, 0xa3}) {
		t.Fatalf("rep insw: %d reads, data % x", rec.reads, c.mapping[4096:4102])
	}
}

func TestExitIOUnclaimed(t *testing.T) {
	c := fakeVCPU(t)
	var pio, mmio bus.Bus
	var logs bytes.Buffer
	al := newAccessLog(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	c.run.ExitReason = uapi.KVM_EXIT_IO
	for range 3 {
		*c.run.IO() = uapi.KvmRunIO{Direction: uapi.KVM_EXIT_IO_IN, Size: 4, Port: 0xcfc, Count: 1, DataOffset: 4096}
		copy(c.mapping[4096:], []byte{1, 2, 3, 4})
		if s := c.handleExit(&pio, &mmio, al); s != nil {
			t.Fatalf("unclaimed port is fatal: %v", s)
		}
		if got := binary.LittleEndian.Uint32(c.mapping[4096:]); got != 0xffffffff {
			t.Fatalf("unclaimed read = %#x, want all-ones", got)
		}
	}
	*c.run.IO() = uapi.KvmRunIO{Direction: uapi.KVM_EXIT_IO_OUT, Size: 1, Port: 0x87, Count: 1, DataOffset: 4096}
	if s := c.handleExit(&pio, &mmio, al); s != nil {
		t.Fatalf("unclaimed write is fatal: %v", s)
	}
	if n := strings.Count(logs.String(), "addr=0xcfc"); n != 1 {
		t.Errorf("port 0xcfc logged %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "addr=0x87"); n != 1 {
		t.Errorf("port 0x87 logged %d times, want once", n)
	}
}

func TestExitIOMalformed(t *testing.T) {
	for _, io := range []uapi.KvmRunIO{
		{Size: 3, Count: 1, DataOffset: 4096},
		{Size: 4, Count: 0, DataOffset: 4096},
		{Size: 4, Count: 2000, DataOffset: 4096},
		{Size: 1, Count: 1, DataOffset: 1 << 40},
	} {
		c := fakeVCPU(t)
		var pio, mmio bus.Bus
		c.run.ExitReason = uapi.KVM_EXIT_IO
		*c.run.IO() = io
		if s := c.handleExit(&pio, &mmio, quietLog()); s == nil || s.Kind != StopFatal {
			t.Errorf("%+v: %v, want fatal", io, s)
		}
	}
}

func TestExitMMIO(t *testing.T) {
	c := fakeVCPU(t)
	var pio, mmio bus.Bus
	rec := &recorder{}
	mmio.Register(0xd0000000, 0x1000, rec)
	c.run.ExitReason = uapi.KVM_EXIT_MMIO
	m := c.run.MMIO()
	*m = uapi.KvmRunMMIO{PhysAddr: 0xd0000010, Len: 4, IsWrite: 1, Data: [8]byte{'a', 'b', 'c', 'd', 'X'}}
	if s := c.handleExit(&pio, &mmio, quietLog()); s != nil || len(rec.writes) != 1 || rec.writes[0] != "abcd" {
		t.Fatalf("write: stop %v, device saw %q", s, rec.writes)
	}
	*m = uapi.KvmRunMMIO{PhysAddr: 0xd0000004, Len: 2}
	if s := c.handleExit(&pio, &mmio, quietLog()); s != nil || m.Data[0] != 0xa4 || m.Data[1] != 0xa5 {
		t.Fatalf("read: stop %v, data % x", s, m.Data)
	}
	*m = uapi.KvmRunMMIO{PhysAddr: 0xfed00000, Len: 8}
	if s := c.handleExit(&pio, &mmio, quietLog()); s != nil || binary.LittleEndian.Uint64(m.Data[:]) != ^uint64(0) {
		t.Fatalf("unclaimed read: stop %v, data % x", s, m.Data)
	}
	*m = uapi.KvmRunMMIO{PhysAddr: 0xfed00000, Len: 9}
	if s := c.handleExit(&pio, &mmio, quietLog()); s == nil || s.Kind != StopFatal {
		t.Fatalf("length 9 accepted: %v", s)
	}
}

func TestExitStops(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(r *uapi.KvmRun)
		want  StopKind
		text  string
	}{
		{"shutdown", func(r *uapi.KvmRun) { r.ExitReason = uapi.KVM_EXIT_SHUTDOWN }, StopReset, "triple fault"},
		{"hlt", func(r *uapi.KvmRun) { r.ExitReason = uapi.KVM_EXIT_HLT }, StopPoweroff, "halted"},
		{"fail entry", func(r *uapi.KvmRun) {
			r.ExitReason = uapi.KVM_EXIT_FAIL_ENTRY
			r.FailEntry().HardwareEntryFailureReason = 0x80000021
		}, StopFatal, "0x80000021"},
		{"internal", func(r *uapi.KvmRun) {
			r.ExitReason = uapi.KVM_EXIT_INTERNAL_ERROR
			r.Internal().Suberror = uapi.KVM_INTERNAL_ERROR_EMULATION
			r.Internal().Ndata = 2
			r.Internal().Data[1] = 0xbeef
		}, StopFatal, "emulation failed"},
		{"internal ndata too big", func(r *uapi.KvmRun) {
			r.ExitReason = uapi.KVM_EXIT_INTERNAL_ERROR
			r.Internal().Ndata = 1000
		}, StopFatal, "internal error"},
		{"system shutdown", func(r *uapi.KvmRun) {
			r.ExitReason = uapi.KVM_EXIT_SYSTEM_EVENT
			r.SystemEvent().Type = uapi.KVM_SYSTEM_EVENT_SHUTDOWN
		}, StopPoweroff, "shutdown"},
		{"system reset", func(r *uapi.KvmRun) {
			r.ExitReason = uapi.KVM_EXIT_SYSTEM_EVENT
			r.SystemEvent().Type = uapi.KVM_SYSTEM_EVENT_RESET
		}, StopReset, "reset"},
		{"system crash", func(r *uapi.KvmRun) {
			r.ExitReason = uapi.KVM_EXIT_SYSTEM_EVENT
			r.SystemEvent().Type = uapi.KVM_SYSTEM_EVENT_CRASH
		}, StopFatal, "crash"},
		{"unknown", func(r *uapi.KvmRun) { r.ExitReason = uapi.KVM_EXIT_UNKNOWN }, StopFatal, "KVM_EXIT_UNKNOWN"},
		{"unhandled", func(r *uapi.KvmRun) { r.ExitReason = 99 }, StopFatal, "unhandled exit reason 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeVCPU(t)
			var pio, mmio bus.Bus
			tc.setup(c.run)
			s := c.handleExit(&pio, &mmio, quietLog())
			if s == nil || s.Kind != tc.want || s.VCPU != 1 || !strings.Contains(s.Reason, tc.text) {
				t.Fatalf("got %+v, want %v mentioning %q", s, tc.want, tc.text)
			}
		})
	}
	c := fakeVCPU(t)
	var pio, mmio bus.Bus
	c.run.ExitReason = uapi.KVM_EXIT_INTR
	if s := c.handleExit(&pio, &mmio, quietLog()); s != nil {
		t.Fatalf("KVM_EXIT_INTR stops: %v", s)
	}
}

func TestRunnerStopFirstWins(t *testing.T) {
	a, b := fakeVCPU(t), fakeVCPU(t)
	r := newRunner(nil, []*VCPU{a, b}, nil)
	r.stop(Stop{Kind: StopReset, VCPU: -1, Reason: "first"})
	r.stop(Stop{Kind: StopFatal, VCPU: 0, Reason: "second"})
	if r.result.Reason != "first" || !r.stopping.Load() {
		t.Fatalf("result %+v", r.result)
	}
	if a.run.ImmediateExit != 1 || b.run.ImmediateExit != 1 {
		t.Fatal("immediate_exit not set on every vCPU")
	}
}

func TestSetLINT(t *testing.T) {
	var l uapi.KvmLapicState
	binary.LittleEndian.PutUint32(l.Regs[apicLVT0:], 0x10000|0x700|0x30) // masked, ExtINT-ish garbage, vector
	binary.LittleEndian.PutUint32(l.Regs[apicLVT1:], 0x10000)
	setLINT(&l)
	if got := binary.LittleEndian.Uint32(l.Regs[apicLVT0:]); got != 0x10000|0x700|0x30 {
		t.Errorf("LVT0 = %#x, want ExtINT with other bits kept", got)
	}
	if got := binary.LittleEndian.Uint32(l.Regs[apicLVT1:]); got != 0x10000|0x400 {
		t.Errorf("LVT1 = %#x, want NMI", got)
	}
}

func TestHaltVerdict(t *testing.T) {
	for _, tc := range []struct {
		states        []haltState
		known, halted bool
	}{
		{[]haltState{haltDead, haltDead, haltDead, haltDead}, true, true},
		{[]haltState{haltDead, haltNotStarted}, true, true},
		{[]haltState{haltDead, haltLive, haltDead}, true, false},
		{[]haltState{haltLive, haltUnknown}, true, false},
		{[]haltState{haltDead, haltUnknown}, false, false},
		{[]haltState{haltNotStarted, haltNotStarted}, true, false}, // nothing ever ran: not a halt
	} {
		known, halted := haltVerdict(tc.states)
		if known != tc.known || halted != tc.halted {
			t.Errorf("%v: known %v halted %v, want %v %v", tc.states, known, halted, tc.known, tc.halted)
		}
	}
}

func TestSetThreadName(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old [16]byte
	if err := unix.Prctl(unix.PR_GET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&old[0])), 0, 0, 0)
	if err := setThreadName("vcpu12-and-a-long-tail"); err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/comm", unix.Gettid()))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != "vcpu12-and-a-lo" {
		t.Fatalf("thread name %q, want the first 15 bytes", got)
	}
}

func TestAccessLogBounded(t *testing.T) {
	var logs bytes.Buffer
	al := newAccessLog(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for page := uint64(0); page < 5000; page++ {
		al.note("mmio", accessKeyMMIO|page, page<<12, false, 4)
	}
	if len(al.seen) != maxLoggedAccesses {
		t.Fatalf("%d addresses remembered, want the bound %d", len(al.seen), maxLoggedAccesses)
	}
	if n := strings.Count(logs.String(), "guest access to unclaimed address"); n != maxLoggedAccesses {
		t.Errorf("%d lines for distinct addresses", n)
	}
	if n := strings.Count(logs.String(), "no longer logging"); n != 1 {
		t.Errorf("overflow said %d times, want once", n)
	}
}
