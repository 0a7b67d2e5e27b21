package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hlsvmm/hlsvmm/kernel"
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
		Name:      "run",
		Usage:     "boot a Linux bzImage in a KVM microVM with a serial console",
		UsageText: "hlsvmm run --kernel BZIMAGE [--initrd INITRD] [--cmdline ...] [--mem MiB] [--vcpus N] [--serial tcp:HOST:PORT|stdio|none]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kernel", Usage: "x86-64 Linux bzImage (e.g. /boot/vmlinuz-*)", Required: true},
			&cli.StringFlag{Name: "initrd", Usage: "initramfs image"},
			&cli.StringFlag{Name: "cmdline", Value: defaultCmdline, Usage: "kernel command line"},
			&cli.IntFlag{Name: "mem", Value: defaultMemMiB, Usage: fmt.Sprintf("guest memory in MiB (at least %d)", minMemMiB)},
			&cli.IntFlag{Name: "vcpus", Value: defaultVCPUs, Usage: "number of vCPUs"},
			&cli.StringFlag{Name: "serial", Value: defaultSerial, Usage: "console: tcp:HOST:PORT (server), stdio or none"},
			&cli.StringFlag{Name: "serial-log", Usage: "also write all console output to this file"},
		},
		Action: runAction,
	}
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
	serialSpec, err := parseSerial(c.String("serial"))
	if err != nil {
		return exitWith(2, fmt.Errorf("--serial: %w", err))
	}
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
		Cmdline:     c.String("cmdline"),
	})
	if err != nil {
		if errors.Is(err, kernel.ErrInitrdTooLarge) || errors.Is(err, kernel.ErrKernelTooLarge) {
			return exitWith(1, fmt.Errorf("--mem %d: %w", mem, err))
		}
		return exitWith(1, err)
	}
	kernelImage, initrd = nil, nil // loaded: let the GC have the copies

	console, err := openConsole(serialSpec, c.String("serial-log"))
	if err != nil {
		guest.Close()
		return exitWith(1, err)
	}
	defer console.Close()

	sys, err := vmm.Open("")
	if err != nil {
		guest.Close()
		return exitWith(1, err)
	}
	defer sys.Close()
	m, err := vmm.NewMachine(sys, guest, vmm.MachineOptions{Logger: slog.Default(), Console: console})
	if err != nil {
		if errors.Is(err, vmm.ErrTooManyVCPUs) {
			return exitWith(2, fmt.Errorf("--vcpus %d: %w", vcpus, err))
		}
		return exitWith(1, err)
	}
	defer m.Close()

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	var stopSig os.Signal
	go func() {
		select {
		case s := <-sigc:
			stopSig = s
			cancel(fmt.Errorf("received %v", s))
		case <-ctx.Done():
		}
	}()
	console.Attach(ctx, m.Serial(), m.Stop)

	slog.Debug("booting", "mem_mib", mem, "vcpus", vcpus, "serial", c.String("serial"))
	stop := m.Run(ctx)
	switch stop.Kind {
	case vmm.StopPoweroff, vmm.StopReset:
		slog.Info("guest stopped", "how", stop.Kind.String(), "reason", stop.Reason)
		return nil
	case vmm.StopHost:
		code := 1
		if s, ok := stopSig.(syscall.Signal); ok {
			code = exitSignalBase + int(s)
		}
		return exitWith(code, fmt.Errorf("VM stopped: %s", stop.Reason))
	default:
		if stop.Regs != "" {
			fmt.Fprint(os.Stderr, stop.Regs)
		}
		return exitWith(1, fmt.Errorf("VM failed: %s", stop))
	}
}

// readInput reads a whole input file and says clearly what is wrong with it.
func readInput(flag, path string) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, exitWith(1, fmt.Errorf("%s %s: no such file", flag, path))
	case err != nil:
		return nil, exitWith(1, fmt.Errorf("%s: %w", flag, err))
	case st.IsDir():
		return nil, exitWith(1, fmt.Errorf("%s %s: is a directory", flag, path))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, exitWith(1, fmt.Errorf("%s: %w", flag, err))
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, exitWith(1, fmt.Errorf("%s: read %s: %w", flag, path, err))
	}
	return b, nil
}

// ---- console glue: replaced by package console (helper C2) when it lands ----

const defaultSerial = "tcp:127.0.0.1:17022"

type serialSpec struct {
	kind string // "tcp", "stdio", "none"
	addr string
}

func parseSerial(s string) (serialSpec, error) {
	switch {
	case s == "stdio" || s == "none":
		return serialSpec{kind: s}, nil
	case strings.HasPrefix(s, "tcp:"):
		addr := strings.TrimPrefix(s, "tcp:")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return serialSpec{}, fmt.Errorf("%q: want tcp:HOST:PORT: %w", s, err)
		}
		return serialSpec{kind: "tcp", addr: addr}, nil
	}
	return serialSpec{}, fmt.Errorf("%q: want tcp:HOST:PORT, stdio or none", s)
}

type tempConsole struct {
	mu     sync.Mutex
	ln     net.Listener
	client net.Conn
	out    io.Writer
	log    *bufio.Writer
	logf   *os.File
	stop   chan struct{}
}

func openConsole(spec serialSpec, logPath string) (*tempConsole, error) {
	c := &tempConsole{}
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--serial-log: %w", err)
		}
		c.logf, c.log = f, bufio.NewWriterSize(f, 64<<10)
		c.stop = make(chan struct{})
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-c.stop:
					return
				case <-t.C:
					c.mu.Lock()
					c.log.Flush()
					c.mu.Unlock()
				}
			}
		}()
	}
	switch spec.kind {
	case "stdio":
		c.out = os.Stdout
	case "tcp":
		ln, err := net.Listen("tcp", spec.addr)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("--serial tcp:%s: %w", spec.addr, err)
		}
		c.ln = ln
	}
	return c, nil
}

func (c *tempConsole) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.log != nil {
		c.log.Write(p)
	}
	if c.out != nil {
		c.out.Write(p)
	}
	if c.client != nil {
		if _, err := c.client.Write(p); err != nil {
			c.client.Close()
			c.client = nil
		}
	}
	return len(p), nil
}

func (c *tempConsole) Attach(ctx context.Context, uart interface {
	Receive(context.Context, []byte) (int, error)
}, _ func(vmm.Stop)) {
	feed := func(r io.Reader) {
		buf := make([]byte, 256)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if _, err := uart.Receive(ctx, buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	if c.out == os.Stdout {
		go feed(os.Stdin)
	}
	if c.ln != nil {
		go func() {
			for {
				conn, err := c.ln.Accept()
				if err != nil {
					return
				}
				c.mu.Lock()
				if c.client != nil {
					c.client.Close()
				}
				c.client = conn
				c.mu.Unlock()
				go feed(conn)
			}
		}()
	}
}

func (c *tempConsole) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
	}
	if c.client != nil {
		c.client.Close()
	}
	if c.log != nil {
		close(c.stop)
		c.log.Flush()
		c.logf.Close()
	}
	return nil
}
