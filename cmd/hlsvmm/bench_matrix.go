package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hlsvmm/hlsvmm/bench/datapath"
	"github.com/hlsvmm/hlsvmm/bench/matrix"
	"github.com/urfave/cli/v2"
)

const benchMatrixUsage = "hlsvmm bench hls|datapath|combine [options]\n" +
	"hlsvmm bench --matrix \"vhost=on|off queues=1|4 offload=none|csum,tso4\" --kernel BZIMAGE [--initrd INITRD] [--vcpus N] [--mem MiB]\n" +
	"    [--run-flag=--append=quiet ...] [--bytes 64MiB] [--streams N] [--latency-samples N] [--log-dir DIR] [--json]"

const benchMatrixDescription = "--matrix boots the guest with `hlsvmm run` (this executable) once per combination of the\n" +
	"knobs' values, one after the other: the base flags (--kernel, --initrd, --vcpus, --mem, each --run-flag)\n" +
	"then --KNOB=VALUE for each knob (a knob overrides a base flag of the same name). It waits until\n" +
	"URL/health answers, runs the datapath benchmark (as `bench datapath`, with the VMM's PID), sends\n" +
	"the VMM SIGTERM (it tears down the network it set up; SIGKILL after --stop-timeout) and prints\n" +
	"one row per combination: throughput each way, HTTP and TCP latency p50/p99, CPU s/GiB.\n" +
	"Exit status: 0 every row passed, 1 a row failed (its VM did not boot, its benchmark failed or it\n" +
	"had to be killed; the table is printed anyway), 2 bad flags or spec."

func benchMatrixFlags() []cli.Flag {
	return append(append([]cli.Flag{
		&cli.StringFlag{Name: "matrix", Usage: "`SPEC`: knobs (flags of hlsvmm run, without dashes) and their values, e.g. \"vhost=on|off queues=1|4 offload=none|csum,tso4\": knobs separated by spaces or ';', values by '|' (so a value may hold commas); the rows are every combination, the first knob varying slowest; at most 64"},
		&cli.StringFlag{Name: "kernel", Usage: "with --matrix: the guest's bzImage (hlsvmm run --kernel)"},
		&cli.StringFlag{Name: "initrd", Usage: "with --matrix: the guest's initramfs"},
		&cli.IntFlag{Name: "vcpus", DefaultText: "hlsvmm run's", Usage: "with --matrix: hlsvmm run --vcpus"},
		&cli.IntFlag{Name: "mem", DefaultText: "hlsvmm run's", Usage: "with --matrix: hlsvmm run --mem in MiB"},
		&cli.GenericFlag{Name: "run-flag", Value: &specList{}, Usage: "with --matrix: one more argument for every hlsvmm run, kept whole (repeatable), e.g. --run-flag=--append=quiet"},
		&cli.DurationFlag{Name: "ready-timeout", Value: matrix.DefaultReadyTimeout, Usage: "with --matrix: how long a row's guest may take to answer URL/health"},
		&cli.DurationFlag{Name: "stop-timeout", Value: matrix.DefaultStopTimeout, Usage: "with --matrix: SIGTERM to SIGKILL of a row's VMM"},
		&cli.StringFlag{Name: "log-dir", Usage: "with --matrix: keep each row's VMM output (row-N.log) and console (row-N-console.log) here"},
	}, datapathFlags("64MiB")...), benchOutputFlags()...)
}

// benchAction is `hlsvmm bench` without a subcommand: --matrix, else the help.
func benchAction(c *cli.Context) error {
	if !c.IsSet("matrix") {
		switch {
		case c.NArg() > 0:
			return exitWith(2, fmt.Errorf("bench: no subcommand %q: want hls, datapath, combine or --matrix SPEC", c.Args().First()))
		case len(c.LocalFlagNames()) > 0:
			return exitWith(2, fmt.Errorf("bench: --%s without --matrix SPEC (or give a subcommand: hls, datapath, combine)", c.LocalFlagNames()[0]))
		}
		return cli.ShowSubcommandHelp(c)
	}
	if c.NArg() > 0 {
		return exitWith(2, fmt.Errorf("bench --matrix: unexpected argument %q", c.Args().First()))
	}
	spec, err := matrix.ParseSpec(c.String("matrix"))
	if err != nil {
		return exitWith(2, fmt.Errorf("--matrix: %w", err))
	}
	// Knob names are checked against run's flags here: a typo is one error, not a row of
	// failed boots.
	runFlags := map[string]bool{}
	for _, f := range runCommand().Flags {
		for _, n := range f.Names() {
			runFlags[n] = true
		}
	}
	for _, k := range spec {
		if !runFlags[k.Name] {
			return exitWith(2, fmt.Errorf("--matrix: knob %s: hlsvmm run has no --%s flag (hlsvmm run --help lists them)", k.Name, k.Name))
		}
	}
	args, err := matrixRunArgs(c)
	if err != nil {
		return err
	}
	dcfg, err := datapathConfig(c)
	if err != nil {
		return err
	}
	if _, err := datapath.New(dcfg); err != nil { // the URL and the rest, before any VM boots
		return exitWith(2, fmt.Errorf("bench --matrix: %w", err))
	}
	switch {
	case c.Duration("ready-timeout") <= 0:
		return exitWith(2, fmt.Errorf("--ready-timeout %v: want a positive duration", c.Duration("ready-timeout")))
	case c.Duration("stop-timeout") <= 0:
		return exitWith(2, fmt.Errorf("--stop-timeout %v: want a positive duration", c.Duration("stop-timeout")))
	}
	exe, err := os.Executable()
	if err != nil {
		return exitWith(1, fmt.Errorf("bench --matrix: find hlsvmm itself to run: %w", err))
	}
	r, err := matrix.New(matrix.Config{
		Spec:         spec,
		Launcher:     &matrix.ExecLauncher{Path: exe, Args: args, LogDir: c.String("log-dir"), StopTimeout: c.Duration("stop-timeout")},
		Bench:        matrix.Datapath(dcfg),
		HealthURL:    strings.TrimSuffix(dcfg.URL, "/") + "/health",
		ReadyTimeout: c.Duration("ready-timeout"),
		Log:          c.App.ErrWriter,
	})
	if err != nil {
		return exitWith(2, fmt.Errorf("bench --matrix: %w", err))
	}
	fmt.Fprintf(c.App.ErrWriter, "bench matrix: %d rows of %s %s\n", len(spec.Rows()), exe, strings.Join(args, " "))
	res, err := runBenchmark(c, "bench --matrix", r.Status, func(ctx context.Context) (*matrix.Result, error) {
		return r.Run(ctx), nil
	})
	if err != nil {
		return err
	}
	if err := writeBenchResult(c, res, nil); err != nil {
		return err
	}
	var failed []string
	for _, row := range res.Rows {
		if !row.Pass {
			failed = append(failed, fmt.Sprintf("%d (%s)", row.Index, row.Label))
		}
	}
	if len(failed) > 0 {
		return exitWith(1, fmt.Errorf("bench --matrix: %d of %d rows failed: %s", len(failed), len(res.Rows), strings.Join(failed, ", ")))
	}
	return nil
}

// matrixRunArgs are the arguments every row's `hlsvmm run` starts with; the row's knobs follow.
func matrixRunArgs(c *cli.Context) ([]string, error) {
	kernel := c.String("kernel")
	if kernel == "" {
		return nil, exitWith(2, errors.New("bench --matrix needs --kernel BZIMAGE"))
	}
	args := []string{"--log-level=" + c.String("log-level"), "run", "--kernel=" + kernel}
	if initrd := c.String("initrd"); initrd != "" {
		args = append(args, "--initrd="+initrd)
	}
	for _, f := range []string{"kernel", "initrd"} {
		if p := c.String(f); p != "" {
			if _, err := os.Stat(p); err != nil {
				return nil, exitWith(2, fmt.Errorf("--%s: %w", f, err))
			}
		}
	}
	for _, f := range []string{"vcpus", "mem"} {
		if c.IsSet(f) {
			if c.Int(f) < 1 {
				return nil, exitWith(2, fmt.Errorf("--%s %d: want at least 1", f, c.Int(f)))
			}
			args = append(args, fmt.Sprintf("--%s=%d", f, c.Int(f)))
		}
	}
	return append(args, specs(c, "run-flag")...), nil
}

var _ benchResult = (*matrix.Result)(nil)
