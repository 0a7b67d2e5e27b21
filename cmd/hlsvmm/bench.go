package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hlsvmm/hlsvmm/bench/hls"
	"github.com/hlsvmm/hlsvmm/bench/report"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// benchCommand groups the measurements: `bench hls`, `bench datapath`, `bench combine`; each
// subcommand takes benchOutputFlags and ends with writeBenchResult. `bench --matrix` itself
// (bench_matrix.go) runs the datapath benchmark over combinations of `hlsvmm run` flags.
func benchCommand() *cli.Command {
	return &cli.Command{
		Name:        "bench",
		Usage:       "measure the VM and its network (hls: a live HLS load of many players; datapath: throughput, latency, VMM CPU; --matrix: datapath over combinations of run flags)",
		UsageText:   benchMatrixUsage,
		Description: benchMatrixDescription,
		Subcommands: []*cli.Command{benchHLSCommand(), benchDatapathCommand(), benchCombineCommand()},
		Flags:       benchMatrixFlags(),
		Action:      benchAction,
	}
}

// benchOutputFlags are shared by every bench subcommand.
func benchOutputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print the result as JSON (for CI) instead of markdown"},
		&cli.StringFlag{Name: "progress", Value: "auto", Usage: "progress on stderr: auto (a bar on a terminal, else a line every 5s), bar, lines or none"},
	}
}

// startProgress starts the progress display the --progress flag asks for; stop it when done.
func startProgress(c *cli.Context, status func() report.Status) (stop func(), err error) {
	p := &report.Progress{W: c.App.ErrWriter}
	switch mode := c.String("progress"); mode {
	case "none":
		return func() {}, nil
	case "auto":
		if f, ok := c.App.ErrWriter.(*os.File); ok {
			_, terr := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
			p.TTY = terr == nil
		}
	case "bar":
		p.TTY = true
	case "lines":
	default:
		return nil, fmt.Errorf("--progress %q: want auto, bar, lines or none", mode)
	}
	p.Start(status)
	return p.Stop, nil
}

// benchResult is what every bench subcommand reports.
type benchResult interface {
	WriteMarkdown(w io.Writer) error
}

// writeBenchResult prints res as markdown or (--json) JSON on the app's Writer (stdout), then turns failed
// gates into exit status 1.
// runBenchmark runs a benchmark with its progress display until it ends or SIGINT/SIGTERM
// stops it. An error is already an exit status: the benchmark could not run at all.
func runBenchmark[R any](c *cli.Context, name string, status func() report.Status, run func(context.Context) (R, error)) (R, error) {
	ctx, cancel := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var zero R
	stop, err := startProgress(c, status)
	if err != nil {
		return zero, exitWith(2, err)
	}
	res, err := run(ctx)
	stop()
	switch {
	case errors.Is(err, context.Canceled):
		return zero, exitWith(2, fmt.Errorf("%s: interrupted before it measured anything", name))
	case err != nil:
		return zero, exitWith(2, fmt.Errorf("%s: %w", name, err))
	}
	return res, nil
}

func writeBenchResult(c *cli.Context, res benchResult, failures []string) error {
	var err error
	if c.Bool("json") {
		err = report.WriteJSON(c.App.Writer, res)
	} else {
		err = res.WriteMarkdown(c.App.Writer)
	}
	if err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	if len(failures) > 0 {
		return exitWith(1, fmt.Errorf("bench %s failed: %s", c.Command.Name, strings.Join(failures, "; ")))
	}
	return nil
}

func benchHLSCommand() *cli.Command {
	return &cli.Command{
		Name:  "hls",
		Usage: "run a live HLS load: N players follow the playlist and fetch every new segment in real time",
		Description: "Each client fetches the playlist, starts --start-segments behind the live edge, then reloads\n" +
			"the playlist every segment duration and fetches each new segment once, in order, verifying it.\n" +
			"Exit status: 0 pass, 1 a --max-* gate was exceeded (or interrupted, or nothing fetched),\n" +
			"2 the load could not start (bad flags, origin unreachable, not a live playlist).",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "url", Value: hls.DefaultURL, Usage: "the origin (playlist " + hls.DefaultPlaylistPath + ") or a playlist URL ending in .m3u8; the VM itself is http://10.177.0.10:17080"},
			&cli.IntFlag{Name: "clients", Value: hls.DefaultClients, Usage: "concurrent players, one connection each"},
			&cli.DurationFlag{Name: "duration", Value: hls.DefaultDuration, Usage: "how long the load runs (no request starts after it)"},
			&cli.DurationFlag{Name: "ramp", Value: hls.DefaultRamp, Usage: "clients start evenly spread over this time"},
			&cli.DurationFlag{Name: "timeout", Usage: "per request, start to last byte (default twice the segment duration)"},
			&cli.IntFlag{Name: "start-segments", Value: hls.DefaultStartSegments, Usage: "start this many segments behind the live edge (1 = the newest)"},
			&cli.StringFlag{Name: "verify", Value: string(hls.VerifyOrigin), Usage: "segment check: origin (the test origin's records and X-Segment-Sha256), sha256 (the header only) or none"},
			&cli.Int64Flag{Name: "max-errors", Value: 0, Usage: "fail if HTTP + transport errors exceed this (negative: never)"},
			&cli.Int64Flag{Name: "max-timeouts", Value: 0, Usage: "fail if timeouts exceed this (negative: never)"},
			&cli.Int64Flag{Name: "max-mismatches", Value: 0, Usage: "fail if content mismatches exceed this (negative: never)"},
			&cli.Int64Flag{Name: "max-behind", Value: -1, Usage: "fail if more clients than this fell behind real time (negative: never)"},
		}, benchOutputFlags()...),
		Action: benchHLS,
	}
}

func benchHLS(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitWith(2, fmt.Errorf("bench hls: unexpected argument %q", c.Args().First()))
	}
	verify, err := hls.ParseVerify(c.String("verify"))
	if err != nil {
		return exitWith(2, fmt.Errorf("--verify: %w", err))
	}
	// Explicit zeros would mean "default" to the package: refuse them here, naming the flag.
	switch {
	case c.Int("clients") < 1:
		return exitWith(2, fmt.Errorf("--clients %d: want at least 1", c.Int("clients")))
	case c.Duration("duration") <= 0:
		return exitWith(2, fmt.Errorf("--duration %v: want a positive duration", c.Duration("duration")))
	case c.Duration("timeout") < 0:
		return exitWith(2, fmt.Errorf("--timeout %v: want a positive duration (0: twice the segment duration)", c.Duration("timeout")))
	case c.Int("start-segments") < 1:
		return exitWith(2, fmt.Errorf("--start-segments %d: want at least 1", c.Int("start-segments")))
	}
	r, err := hls.New(hls.Config{
		URL:           c.String("url"),
		Clients:       c.Int("clients"),
		Duration:      c.Duration("duration"),
		Ramp:          c.Duration("ramp"),
		Timeout:       c.Duration("timeout"),
		StartSegments: c.Int("start-segments"),
		Verify:        verify,
	})
	if err != nil {
		return exitWith(2, fmt.Errorf("bench hls: %w", err))
	}
	res, err := runBenchmark(c, "bench hls", r.Status, r.Run)
	if err != nil {
		return err
	}
	res.Gate(hls.Limits{
		MaxErrors:     c.Int64("max-errors"),
		MaxTimeouts:   c.Int64("max-timeouts"),
		MaxMismatches: c.Int64("max-mismatches"),
		MaxBehind:     c.Int64("max-behind"),
	})
	return writeBenchResult(c, res, res.Failures)
}
