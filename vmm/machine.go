package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/hlsvmm/hlsvmm/devices/i8042"
	"github.com/hlsvmm/hlsvmm/devices/legacy"
	"github.com/hlsvmm/hlsvmm/devices/serial"
	"github.com/hlsvmm/hlsvmm/internal/uapi"
	"github.com/hlsvmm/hlsvmm/kernel"
	"github.com/hlsvmm/hlsvmm/metrics/exits"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
	"github.com/hlsvmm/hlsvmm/vmm/pcibus"
	"golang.org/x/sys/unix"
)

// MinMemory is the least guest RAM hlsvmm boots a distro kernel with.
const MinMemory = 128 << 20

// ErrConfig is wrapped by every error about a machine configuration that
// can never work, whatever the host.
var ErrConfig = errors.New("invalid machine configuration")

// ErrTooManyVCPUs is wrapped when the host's KVM allows fewer vCPUs than asked.
var ErrTooManyVCPUs = errors.New("more vCPUs than KVM allows")

// GuestConfig is what to boot and on how much of a machine.
type GuestConfig struct {
	MemoryBytes uint64 // guest RAM, at least MinMemory, a multiple of 1 MiB
	VCPUs       int    // 1..kernel.MaxCPUs (and what KVM allows)
	Kernel      []byte // bzImage file contents
	Initrd      []byte // initramfs, may be empty
	Cmdline     string
}

// Guest is guest RAM with a kernel loaded in it and the boot vCPU's entry
// state: everything about a machine that needs no KVM. Loading it first
// validates the kernel, initrd, command line and sizes before /dev/kvm is
// even opened.
type Guest struct {
	mem   *memory.Memory
	boot  *kernel.CPUState
	vcpus int
}

// LoadGuest maps guest RAM (never touched beyond what the loader writes) and
// loads the kernel into it.
func LoadGuest(cfg GuestConfig) (*Guest, error) {
	if cfg.MemoryBytes < MinMemory {
		return nil, fmt.Errorf("%w: %d MiB of guest memory, at least %d MiB needed", ErrConfig, cfg.MemoryBytes>>20, MinMemory>>20)
	}
	if cfg.MemoryBytes%(1<<20) != 0 {
		return nil, fmt.Errorf("%w: guest memory %d bytes is not a whole number of MiB", ErrConfig, cfg.MemoryBytes)
	}
	if cfg.VCPUs < 1 || cfg.VCPUs > kernel.MaxCPUs {
		return nil, fmt.Errorf("%w: %d vCPUs, want 1 to %d", ErrConfig, cfg.VCPUs, kernel.MaxCPUs)
	}
	mem, err := memory.New(cfg.MemoryBytes)
	if err != nil {
		return nil, err
	}
	boot, err := kernel.Load(mem, kernel.Config{Kernel: cfg.Kernel, Initrd: cfg.Initrd, Cmdline: cfg.Cmdline, CPUs: cfg.VCPUs})
	if err != nil {
		mem.Close()
		return nil, fmt.Errorf("load kernel: %w", err)
	}
	return &Guest{mem: mem, boot: boot, vcpus: cfg.VCPUs}, nil
}

// Memory is the guest's RAM.
func (g *Guest) Memory() *memory.Memory { return g.mem }

// Close frees guest RAM. It is idempotent.
func (g *Guest) Close() error { return g.mem.Close() }

// MachineOptions are the host-side parts of a machine. The zero value is
// usable: no logging beyond slog.Default.
type MachineOptions struct {
	// Logger receives the machine's logs; nil means slog.Default().
	Logger *slog.Logger
	// Console receives what the guest writes to COM1; nil discards it.
	// Writes happen on vCPU threads and should not block for long.
	Console io.Writer
	// VCPUAffinity, if not empty, has one set of host CPUs per vCPU: each
	// vCPU's thread is pinned to its set when it starts running. That
	// trades the scheduler's freedom to move a vCPU for cache locality:
	// a pinned vCPU waits for its CPU when something else runs there.
	// NewMachine checks the sets against the vCPU count and the CPUs the
	// process may use (the error wraps ErrAffinity); a pin that still
	// fails stops the machine.
	VCPUAffinity []unix.CPUSet
}

// Machine is a guest wired to KVM: the VM, its vCPUs configured for boot,
// the legacy platform and PCI bus 0 (host bridge only until AddVirtio adds
// devices). Other devices are added on VM().PIO()/MMIO() before Run.
type Machine struct {
	log    *slog.Logger
	guest  *Guest
	vm     *VM
	vcpus  []*VCPU
	runner *runner
	com1   *serial.UART
	pci    *pcibus.Bus
	pciDev []virtioFunction // closed before the VM

	runOnce   sync.Once
	closeOnce sync.Once
	closeErr  error
}

// NewMachine creates the VM for guest g and configures its vCPUs: CPUID
// (KVM's supported set with per-vCPU APIC ids and topology), boot MSRs,
// FPU, LAPIC LINT0/LINT1, and vCPU 0's registers at the kernel's entry.
// The machine takes ownership of g, also when NewMachine fails.
func NewMachine(sys *System, g *Guest, opts MachineOptions) (m *Machine, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m = &Machine{log: log, guest: g}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if max := sys.MaxVCPUs(); g.vcpus > max {
		return nil, fmt.Errorf("%w: %d vCPUs asked, this host's KVM allows %d", ErrTooManyVCPUs, g.vcpus, max)
	}
	if err := checkAffinity(opts.VCPUAffinity, g.vcpus); err != nil {
		return nil, err
	}
	supported, err := sys.SupportedCPUID()
	if err != nil {
		return nil, err
	}
	if !supported.HasKVMLeaves() {
		log.Warn("KVM's supported CPUID has no KVM leaves at 0x40000000: the guest will not use kvm-clock")
	}
	tscDeadline := sys.CheckExtension(uapi.KVM_CAP_TSC_DEADLINE_TIMER) > 0

	if m.vm, err = NewVM(sys, g.mem); err != nil {
		return nil, fmt.Errorf("create VM: %w", err)
	}
	for i := range g.vcpus {
		c, err := m.vm.NewVCPU(i)
		if err != nil {
			return nil, err
		}
		m.vcpus = append(m.vcpus, c)
		if err := configureVCPU(c, supported, Topology{APICID: uint32(i), CPUs: g.vcpus, TSCDeadline: tscDeadline}); err != nil {
			return nil, fmt.Errorf("configure vCPU %d: %w", i, err)
		}
	}
	if err := setBootState(m.vcpus[0], g.boot); err != nil {
		return nil, fmt.Errorf("set vCPU 0 at the kernel entry: %w", err)
	}
	m.runner = newRunner(m.vm, m.vcpus, log)
	m.runner.affinity = slices.Clone(opts.VCPUAffinity)
	if err := m.addPlatformDevices(opts.Console); err != nil {
		return nil, err
	}
	return m, nil
}

func configureVCPU(c *VCPU, supported CPUID, t Topology) error {
	cpuid, err := supported.ForVCPU(t)
	if err != nil {
		return err
	}
	if err := c.SetCPUID(cpuid); err != nil {
		return err
	}
	if err := c.SetMSRs(bootMSRs()); err != nil {
		return err
	}
	if err := c.SetupFPU(); err != nil {
		return err
	}
	return c.SetupLINT()
}

func setBootState(c *VCPU, s *kernel.CPUState) error {
	sregs, err := c.Sregs()
	if err != nil {
		return err
	}
	if err := c.SetSregs(bootSregs(sregs, s)); err != nil {
		return err
	}
	return c.SetRegs(bootRegs(s))
}

// addPlatformDevices puts the PC platform on the port-I/O bus: the
// harmless legacy ports, the CMOS RTC (Linux's rtc_cmos spins at boot while
// an absent RTC reads "update in progress"), the i8042 whose reset line
// (reboot=k) stops the machine, PCI bus 0 (configuration mechanism #1 on
// 0xCF8-0xCFF with a host bridge, so Linux finds the bus without ACPI),
// and COM1.
func (m *Machine) addPlatformDevices(console io.Writer) error {
	pio := m.vm.PIO()
	if err := legacy.RegisterSinks(pio); err != nil {
		return fmt.Errorf("register legacy ports: %w", err)
	}
	if err := legacy.NewRTC(time.Now).Register(pio); err != nil {
		return fmt.Errorf("register CMOS RTC: %w", err)
	}
	if err := i8042.New(m.Reset).Register(pio); err != nil {
		return fmt.Errorf("register i8042: %w", err)
	}
	pci, err := pcibus.New(m.vm, &pcibus.Options{Logger: m.log})
	if err != nil {
		return err
	}
	m.pci = pci
	m.com1 = serial.New(serial.Config{IRQ: serial.COM1IRQ, Line: m.vm, Out: console, Logger: m.log})
	if err := pio.Register(serial.COM1Base, serial.Size, m.com1); err != nil {
		return fmt.Errorf("register COM1: %w", err)
	}
	return nil
}

// Serial is COM1, the guest's console: feed it input with Receive.
func (m *Machine) Serial() *serial.UART { return m.com1 }

// VM is the machine's VM, for registering devices and interrupt routes.
func (m *Machine) VM() *VM { return m.vm }

// VCPUExits reads every vCPU's exit counters, indexed by vCPU id. Safe
// from any goroutine while the machine runs.
func (m *Machine) VCPUExits() []exits.Snapshot {
	s := make([]exits.Snapshot, len(m.vcpus))
	for i, c := range m.vcpus {
		s[i] = c.exits.Snapshot()
	}
	return s
}

// VCPUs is the number of vCPUs.
func (m *Machine) VCPUs() int { return len(m.vcpus) }

// Memory is the guest's RAM.
func (m *Machine) Memory() *memory.Memory { return m.guest.mem }

// Run runs the vCPUs until the guest powers off or resets, a vCPU hits a
// fatal exit, Stop is called, or ctx ends. It returns why. Run may be
// called once.
func (m *Machine) Run(ctx context.Context) Stop {
	ran := false
	var s Stop
	m.runOnce.Do(func() {
		ran = true
		// Setup is over: hand the heap it left behind back to the OS so the
		// VMM runs with the small footprint it needs, not its peak.
		debug.FreeOSMemory()
		s = m.runner.run(ctx)
	})
	if !ran {
		return Stop{Kind: StopFatal, VCPU: -1, Reason: "machine already ran"}
	}
	m.log.Debug("machine stopped", "kind", s.Kind.String(), "reason", s.Reason)
	return s
}

// Stop asks the machine to stop with s (the first stop wins). Devices call
// it (the i8042's reset line), so does the host. Safe from any goroutine.
func (m *Machine) Stop(s Stop) { m.runner.stop(s) }

// Reset is Stop for a guest-requested reset, in the form devices take.
func (m *Machine) Reset() {
	m.runner.stop(Stop{Kind: StopReset, VCPU: -1, Reason: "guest requested a reset"})
}

// Close releases the vCPUs, the VM and guest RAM. Call it after Run has
// returned (or instead of Run). It is idempotent.
func (m *Machine) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.com1 != nil {
			errs = append(errs, m.com1.Close())
		}
		// Transports first: they detach their irqfds, ioeventfds and MSI
		// routes from the VM and stop their devices' datapaths.
		for _, f := range m.pciDev {
			errs = append(errs, f.t.Close())
		}
		for _, c := range m.vcpus {
			errs = append(errs, c.Close())
		}
		if m.vm != nil {
			errs = append(errs, m.vm.Close())
		}
		errs = append(errs, m.guest.Close())
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

var _ io.Closer = (*Machine)(nil)
