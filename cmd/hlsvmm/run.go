package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hlsvmm/hlsvmm/console"
	"github.com/hlsvmm/hlsvmm/kernel"
	"github.com/hlsvmm/hlsvmm/metrics"
	"github.com/hlsvmm/hlsvmm/vmm"
	"github.com/urfave/cli/v2"
)

// defaultCmdline suits a distro kernel on hlsvmm's machine: console on COM1,
// reboot through the i8042 (hlsvmm catches it and exits), reboot 1 s after
// a panic, no probing of the i8042's aux/mux ports and no video mode setting.
const defaultCmdline = "console=ttyS0 reboot=k panic=1 i8042.noaux i8042.nomux i8042.dumbkbd nomodeset"

// Flag bounds that need no /dev/kvm.
const (
	defaultMemMiB = 4096
	defaultVCPUs  = 4
	minMemMiB     = vmm.MinMemory >> 20
	maxMemMiB     = 1 << 20 // 1 TiB
)

// Exit statuses of `hlsvmm run` besides 0 (guest powered off or reset) and 1
// (bad input, host problem, fatal guest exit).
const (
	exitSignalBase = 128 // + the signal number, as a shell reports it
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "boot a Linux bzImage in a KVM microVM with a serial console",
		UsageText: "hlsvmm run --kernel BZIMAGE [--initrd INITRD] [--cmdline ...] [--append ...] [--mem MiB] [--vcpus N] [--serial tcp:HOST:PORT|stdio|none]\n" +
			"       [--net bridge|macvtap|tap|none] [--tap NAME] [--mac MAC] [--vhost auto|on|off] [--queues N] [--vm-ip IP] [--keep-network]\n" +
			"       [--queue-size N] [--offload LIST|none] [--event-idx on|off] [--indirect-desc on|off] [--mrg-rxbuf on|off]\n" +
			"       [--busy-poll µs] [--tap-sndbuf SIZE|unlimited] [--vcpu-affinity CPULIST|none]\n" +
			"       [--metrics HOST:PORT] [--disk PATH[,ro]]... [--share PATH:TAG,ro]...",
		Flags: append(append(append([]cli.Flag{
			&cli.StringFlag{Name: "kernel", Usage: "x86-64 Linux bzImage (e.g. /boot/vmlinuz-*)", Required: true},
			&cli.StringFlag{Name: "initrd", Usage: "initramfs image"},
			&cli.StringFlag{Name: "cmdline", Value: defaultCmdline, Usage: "kernel command line"},
			&cli.StringFlag{Name: "append", Usage: "kernel parameters added to the end of --cmdline (keeps its default)"},
			&cli.IntFlag{Name: "mem", Value: defaultMemMiB, Usage: fmt.Sprintf("guest memory in MiB (at least %d)", minMemMiB)},
			&cli.IntFlag{Name: "vcpus", Value: defaultVCPUs, Usage: "number of vCPUs"},
			&cli.StringFlag{Name: "serial", Value: console.DefaultSpec, Usage: "console: tcp:HOST:PORT (server), stdio or none"},
			&cli.StringFlag{Name: "serial-log", Usage: "also write all console output to this file"},
		}, append(append(netFlags(), tuningFlags()...), hostnetFlags()...)...), metricsFlags()...), deviceFlags()...),
		Action: runAction,
	}
}

// joinParams is the kernel command line base followed by the parameters in
// extra, one space between them.
func joinParams(base, extra string) string {
	return strings.TrimSpace(strings.TrimSpace(base) + " " + strings.TrimSpace(extra))
}

func runAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitWith(2, fmt.Errorf("run: unexpected argument %q", c.Args().First()))
	}
	// Everything checkable without /dev/kvm first, cheapest first.
	mem, vcpus := c.Int("mem"), c.Int("vcpus")
	if mem < minMemMiB {
		return exitWith(2, fmt.Errorf("--mem %d: at least %d MiB are needed to boot a distro kernel", mem, minMemMiB))
	}
	if mem > maxMemMiB {
		return exitWith(2, fmt.Errorf("--mem %d: more than %d MiB", mem, maxMemMiB))
	}
	if vcpus < 1 || vcpus > kernel.MaxCPUs {
		return exitWith(2, fmt.Errorf("--vcpus %d: want 1 to %d", vcpus, kernel.MaxCPUs))
	}
	serialSpec, err := console.ParseSpec(c.String("serial"))
	if err != nil {
		return exitWith(2, fmt.Errorf("--serial: %w", err))
	}
	netOpts, netPlan, err := parseRunNet(c) // --net: run_hostnet.go
	if err != nil {
		return exitWith(2, err)
	}
	tuning, err := parseRunTuning(c, vcpus, netOpts) // the datapath knobs: run_tuning.go
	if err != nil {
		return exitWith(2, err)
	}
	devs, err := openDevices(c, slog.Default()) // --disk, --share, --rng: opened and checked before boot
	if err != nil {
		return err
	}
	defer devs.Close() // after the machine: its transports stop the devices first
	kernelImage, err := readInput("--kernel", c.String("kernel"))
	if err != nil {
		return err
	}
	if _, err := kernel.ParseBzImage(kernelImage); err != nil {
		return exitWith(1, fmt.Errorf("--kernel %s: %w", c.String("kernel"), err))
	}
	var initrd []byte
	if p := c.String("initrd"); p != "" {
		if initrd, err = readInput("--initrd", p); err != nil {
			return err
		}
	}
	guest, err := vmm.LoadGuest(vmm.GuestConfig{
		MemoryBytes: uint64(mem) << 20,
		VCPUs:       vcpus,
		Kernel:      kernelImage,
		Initrd:      initrd,
		Cmdline:     netPlan.cmdline(joinParams(c.String("cmdline"), c.String("append"))),
	})
	if err != nil {
		if errors.Is(err, kernel.ErrInitrdTooLarge) || errors.Is(err, kernel.ErrKernelTooLarge) {
			return exitWith(1, fmt.Errorf("--mem %d: %w", mem, err))
		}
		return exitWith(1, err)
	}
	releaseInput(kernelImage) // loaded: drop the mappings and their page-cache pages from our RSS
	releaseInput(initrd)
	kernelImage, initrd = nil, nil

	// The console listens now so that a busy port is reported before
	// /dev/kvm is opened. A log file it creates is removed again if the
	// VM never starts: a failed run leaves nothing behind.
	logPath := c.String("serial-log")
	_, statErr := os.Stat(logPath)
	newLog := logPath != "" && errors.Is(statErr, fs.ErrNotExist)
	con, err := console.New(serialSpec, &console.Options{LogPath: logPath, Logger: slog.Default()})
	if err != nil {
		guest.Close()
		return exitWith(1, fmt.Errorf("--serial %s: %w", serialSpec, err))
	}
	started := false
	defer func() {
		con.Close()
		if newLog && !started {
			os.Remove(logPath)
		}
	}()

	// Then the host resources the VM will use, each failing before boot
	// and closed again (a TAP hlsvmm created vanishes with its fd).
	exporter, err := listenMetrics(c.String("metrics"))
	if err != nil {
		guest.Close()
		code := 1
		if errors.Is(err, metrics.ErrAddress) {
			code = 2
		}
		return exitWith(code, err)
	}
	defer exporter.Close()
	sys, err := vmm.Open("") // before the host network: no KVM, nothing touched
	if err != nil {
		guest.Close()
		return exitWith(1, err)
	}
	defer sys.Close()
	hnet, err := netPlan.up() // the host network, torn down after the device is closed
	if err != nil {
		guest.Close()
		return exitWith(1, err)
	}
	defer hnet.down()
	if netOpts != nil {
		if netOpts.macvtap, err = hnet.macvtapIndex(); err != nil {
			guest.Close()
			return exitWith(1, err)
		}
	}
	var netDev *netDevice
	if netOpts != nil {
		if netDev, err = openNet(netOpts, slog.Default()); err != nil {
			guest.Close()
			return exitWith(1, err)
		}
		defer netDev.Close() // after the machine: its transport stops the device first
		if err := hnet.opened(); err != nil {
			guest.Close()
			return exitWith(1, err)
		}
	}

	m, err := vmm.NewMachine(sys, guest, vmm.MachineOptions{Logger: slog.Default(), Console: con, VCPUAffinity: tuning.cpuSets()})
	if err != nil {
		if errors.Is(err, vmm.ErrTooManyVCPUs) {
			return exitWith(2, fmt.Errorf("--vcpus %d: %w", vcpus, err))
		}
		if errors.Is(err, vmm.ErrAffinity) {
			return exitWith(2, fmt.Errorf("--vcpu-affinity: %w", err))
		}
		return exitWith(1, err)
	}
	defer m.Close()
	if netDev != nil {
		if _, err := m.AddVirtio(netDev.dev); err != nil {
			return exitWith(1, err)
		}
		slog.Info(netDev.describe(netOpts))
		slog.Info("net0 tuning: " + netDev.tuning.String())
	}
	if err := devs.attach(m, slog.Default()); err != nil {
		return exitWith(1, err)
	}
	if err := exporter.register(m, con, serialSpec, netDev, devs); err != nil {
		return exitWith(1, err)
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	stopSig := make(chan os.Signal, 1)
	go func() {
		select {
		case s := <-sigc:
			stopSig <- s
			cancel(fmt.Errorf("received %v", s))
		case <-con.Quit():
			cancel(errors.New("quit from the console"))
		case <-ctx.Done():
		}
	}()
	if err := con.Start(m.Serial()); err != nil {
		return exitWith(1, err)
	}
	if a := con.Addr(); a != nil {
		slog.Info("serial console listening", "addr", a.String())
	}
	bootStatus(ctx, hnet, con.Addr(), netDev, netOpts)

	slog.Debug("booting", "mem_mib", mem, "vcpus", vcpus, "serial", c.String("serial"))
	started = true
	stop := m.Run(ctx)
	switch stop.Kind {
	case vmm.StopPoweroff, vmm.StopReset:
		slog.Info("guest stopped", "how", stop.Kind.String(), "reason", stop.Reason)
		return nil
	case vmm.StopHost:
		code := 1
		select {
		case s := <-stopSig:
			code = exitSignalBase + int(s.(syscall.Signal))
		default:
		}
		return exitWith(code, fmt.Errorf("VM stopped: %s", stop.Reason))
	default:
		if stop.Regs != "" {
			fmt.Fprint(os.Stderr, stop.Regs)
		}
		return exitWith(1, fmt.Errorf("VM failed: %s", stop))
	}
}
