package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/hlsvmm/hlsvmm/hostnet"
	"github.com/urfave/cli/v2"
)

// networkFlags are shared by setup, teardown and check: they name what to
// set up, tear down or check.
func networkFlags() []cli.Flag {
	d := hostnet.DefaultConfig()
	return []cli.Flag{
		&cli.StringFlag{Name: "mode", Value: string(d.Mode), Usage: "bridge (TAP on a bridge with NAT) or macvtap"},
		&cli.StringFlag{Name: "bridge", Value: d.Bridge, Usage: "bridge name"},
		&cli.StringFlag{Name: "tap", Value: d.Tap, Usage: "TAP name"},
		&cli.StringFlag{Name: "subnet", Value: d.Subnet.String(), Usage: "VM subnet (IPv4 prefix)"},
		&cli.StringFlag{Name: "gateway", Value: d.Gateway.String(), Usage: "host address on the bridge"},
		&cli.StringFlag{Name: "vm-ip", Value: d.VM.String(), Usage: "the VM's address"},
		&cli.StringSliceFlag{Name: "forward", Usage: "TCP port forward HOST:GUEST (repeatable; replaces the defaults 17080:17080 17100:9100 17113:9113 17122:22)"},
		&cli.StringFlag{Name: "link", Usage: "macvtap mode: the host NIC the guest shares"},
		&cli.StringFlag{Name: "macvtap", Value: d.Macvtap, Usage: "macvtap mode: the macvtap's name"},
		&cli.StringFlag{Name: "macvtap-mode", Value: d.MacvtapMode, Usage: "macvtap mode: bridge, private or vepa"},
		&cli.StringFlag{Name: "user", Usage: "owner of the TAP/macvtap as UID[:GID] (default: SUDO_UID/SUDO_GID or the caller)"},
		&cli.StringFlag{Name: "state-dir", Value: d.StateDir, Usage: "where setup records what it did, for teardown"},
	}
}

func networkConfig(c *cli.Context) (hostnet.Config, error) {
	cfg, err := networkFlagValues(c)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// networkFlagValues reads networkFlags() without validating; `run` uses it
// with its own --net and --tap (an empty --mode or --tap keeps the default).
func networkFlagValues(c *cli.Context) (hostnet.Config, error) {
	cfg := hostnet.DefaultConfig()
	if m := c.String("mode"); m != "" {
		cfg.Mode = hostnet.Mode(m)
	}
	cfg.Bridge = c.String("bridge")
	if t := c.String("tap"); t != "" {
		cfg.Tap = t
	}
	cfg.Link = c.String("link")
	cfg.Macvtap = c.String("macvtap")
	cfg.MacvtapMode = c.String("macvtap-mode")
	cfg.StateDir = c.String("state-dir")
	var err error
	if cfg.Subnet, err = netip.ParsePrefix(c.String("subnet")); err != nil {
		return cfg, fmt.Errorf("--subnet: %w", err)
	}
	if cfg.Gateway, err = netip.ParseAddr(c.String("gateway")); err != nil {
		return cfg, fmt.Errorf("--gateway: %w", err)
	}
	if cfg.VM, err = netip.ParseAddr(c.String("vm-ip")); err != nil {
		return cfg, fmt.Errorf("--vm-ip: %w", err)
	}
	if fs := c.StringSlice("forward"); len(fs) > 0 {
		cfg.Forwards = nil
		for _, s := range fs {
			f, err := hostnet.ParseForward(s)
			if err != nil {
				return cfg, fmt.Errorf("--forward: %w", err)
			}
			cfg.Forwards = append(cfg.Forwards, f)
		}
	}
	if u := c.String("user"); u != "" {
		if cfg.UID, cfg.GID, err = hostnet.ParseOwner(u); err != nil {
			return cfg, fmt.Errorf("--user: %w", err)
		}
	}
	return cfg, nil
}

func networkCommand() *cli.Command {
	return &cli.Command{
		Name:  "network",
		Usage: "set up, check or tear down the host network (bridge, TAP, NAT, port forwards, or macvtap)",
		Subcommands: []*cli.Command{
			{
				Name:   "setup",
				Usage:  "create the bridge, TAP, sysctls and nftables tables (idempotent)",
				Flags:  networkFlags(),
				Action: networkSetup,
			},
			{
				Name:   "teardown",
				Usage:  "remove exactly what setup made and restore the sysctls (idempotent)",
				Flags:  networkFlags(),
				Action: networkTeardown,
			},
			{
				Name:  "check",
				Usage: "verify the host network (and the VM with --vm); non-zero exit if a required check fails",
				Flags: append(networkFlags(),
					&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
					&cli.BoolFlag{Name: "vm", Usage: "require the VM to answer ping and /health"},
					&cli.DurationFlag{Name: "timeout", Value: time.Second, Usage: "timeout of the VM ping and /health"},
				),
				Action: networkCheck,
			},
		},
	}
}

func printLines(lines []hostnet.Line) {
	for _, l := range lines {
		fmt.Fprintln(os.Stderr, l.String())
	}
}

func networkSetup(c *cli.Context) error {
	cfg, err := networkConfig(c)
	if err != nil {
		return exitWith(2, err)
	}
	h, err := hostnet.OpenHost()
	if err != nil {
		return exitWith(1, err)
	}
	defer h.Close()
	rep, err := h.Setup(cfg)
	printLines(rep.Lines)
	if err != nil {
		if len(rep.Lines) > 0 {
			fmt.Fprintln(os.Stderr, "✗ setup failed; everything this run changed was rolled back")
		}
		return exitWith(1, err)
	}
	forgetRunOwner(cfg) // set up by hand now: no `hlsvmm run` tears it down
	switch {
	case cfg.Mode == hostnet.ModeMacvtap:
		fmt.Fprintf(os.Stderr, "✓ macvtap ready: %s (state in %s)\n", rep.Device, rep.StatePath)
	case rep.Changed:
		fmt.Fprintf(os.Stderr, "✓ Network ready: %s %v, TAP %s, VM %v (state in %s)\n", cfg.Bridge, cfg.Gateway, cfg.Tap, cfg.VM, rep.StatePath)
	default:
		fmt.Fprintf(os.Stderr, "• Network already set up, nothing changed\n")
	}
	return nil
}

func networkTeardown(c *cli.Context) error {
	cfg, err := networkConfig(c)
	if err != nil {
		return exitWith(2, err)
	}
	h, err := hostnet.OpenHost()
	if err != nil {
		return exitWith(1, err)
	}
	defer h.Close()
	rep, err := h.Teardown(cfg)
	printLines(rep.Lines)
	if err != nil {
		return exitWith(1, err)
	}
	forgetRunOwner(cfg)
	fmt.Fprintln(os.Stderr, "Network teardown complete")
	return nil
}

func networkCheck(c *cli.Context) error {
	cfg, err := networkConfig(c)
	if err != nil {
		return exitWith(2, err)
	}
	h, err := hostnet.OpenHost()
	if err != nil {
		return exitWith(1, err)
	}
	defer h.Close()
	rep, err := h.Check(cfg, &hostnet.CheckOptions{RequireVM: c.Bool("vm"), Timeout: c.Duration("timeout")})
	if err != nil {
		return exitWith(1, err)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return exitWith(1, err)
		}
	} else {
		fmt.Println("Checking HLS microVM network...")
		for _, l := range rep.Lines {
			fmt.Println(l.String())
		}
	}
	if !rep.OK {
		return exitWith(1, errors.New("network check: a required check failed"))
	}
	return nil
}
