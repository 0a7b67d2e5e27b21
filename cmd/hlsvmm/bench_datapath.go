package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/hlsvmm/hlsvmm/bench/datapath"
	"github.com/urfave/cli/v2"
)

func benchDatapathCommand() *cli.Command {
	return &cli.Command{
		Name:  "datapath",
		Usage: "measure the guest's network: TCP throughput both ways (verified), request/response latency, request rate over many connections, VMM CPU per GiB",
		Description: "Talks to the test origin's traffic endpoints (/blob, /sink, /ping, TCP echo on 17090).\n" +
			"Combine the --json outputs of several runs (hlsvmm and QEMU, vhost on and off) with `hlsvmm bench combine`.\n" +
			"Exit status: 0 pass, 1 a transfer failed or did not verify, 2 nothing could be measured\n" +
			"(bad flags, origin unreachable, no such VMM process).",
		Flags: append(append(datapathFlags("256MiB"),
			&cli.IntFlag{Name: "vmm-pid", Usage: "the VMM process: its utime+stime (and its vhost-PID kernel workers') per GiB moved"},
			&cli.StringFlag{Name: "label", Usage: "names this run in combined tables, e.g. \"hlsvmm vhost=on\" (default: the URL's host)"},
		), benchOutputFlags()...),
		Action: benchDatapath,
	}
}

// datapathFlags are what `bench datapath` and `bench --matrix` measure; bytes is --bytes' default.
func datapathFlags(bytes string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "url", Value: datapath.DefaultURL, Usage: "the guest's origin"},
		&cli.StringFlag{Name: "bytes", Value: bytes, Usage: "bytes per direction, split over the streams (units K, M, G binary; the test bed's link moves ~10 MiB/s)"},
		&cli.IntFlag{Name: "streams", Value: datapath.DefaultStreams, Usage: "parallel TCP connections per direction"},
		&cli.IntFlag{Name: "latency-samples", Value: datapath.DefaultLatencySamples, Usage: "request/response samples (HTTP and TCP echo each); negative: no latency phase"},
		&cli.StringFlag{Name: "echo", Value: "auto", Usage: "TCP echo HOST:PORT for the lower-level latency; auto: the URL's host, port " + datapath.DefaultEchoPort + "; none: skip"},
		&cli.IntFlag{Name: "rate-connections", Usage: fmt.Sprintf("request rate: GET /ping back to back on this many kept-alive connections at once, after the latency phase (at most %d); 0: skip", datapath.MaxRateConnections)},
		&cli.IntFlag{Name: "rate-requests", DefaultText: fmt.Sprintf("%d per connection", datapath.DefaultRatePerConn), Usage: "requests of the rate phase over all its connections"},
		&cli.DurationFlag{Name: "timeout", Value: datapath.DefaultTimeout, Usage: "per phase"},
	}
}

// datapathConfig checks the datapathFlags and returns their configuration (no label, no VMM).
func datapathConfig(c *cli.Context) (datapath.Config, error) {
	n, err := datapath.ParseSize(c.String("bytes"))
	if err != nil {
		return datapath.Config{}, exitWith(2, fmt.Errorf("--bytes: %w", err))
	}
	// Explicit zeros would mean "default" to the package: refuse them here, naming the flag.
	switch {
	case n < 1:
		return datapath.Config{}, exitWith(2, fmt.Errorf("--bytes %q: want at least 1 byte", c.String("bytes")))
	case c.Int("streams") < 1:
		return datapath.Config{}, exitWith(2, fmt.Errorf("--streams %d: want at least 1", c.Int("streams")))
	case c.Duration("timeout") <= 0:
		return datapath.Config{}, exitWith(2, fmt.Errorf("--timeout %v: want a positive duration", c.Duration("timeout")))
	case c.Int("rate-connections") < 0 || c.Int("rate-connections") > datapath.MaxRateConnections:
		return datapath.Config{}, exitWith(2, fmt.Errorf("--rate-connections %d: want 1 to %d, or 0 for no rate phase", c.Int("rate-connections"), datapath.MaxRateConnections))
	case c.Int("rate-requests") < 0:
		return datapath.Config{}, exitWith(2, fmt.Errorf("--rate-requests %d: want a number of requests, or 0 for %d per connection", c.Int("rate-requests"), datapath.DefaultRatePerConn))
	case c.Int("rate-requests") > 0 && c.Int("rate-connections") == 0:
		return datapath.Config{}, exitWith(2, fmt.Errorf("--rate-requests %d without --rate-connections", c.Int("rate-requests")))
	case c.Int("rate-requests") > 0 && c.Int("rate-requests") < c.Int("rate-connections"):
		return datapath.Config{}, exitWith(2, fmt.Errorf("--rate-requests %d: want at least one per connection (--rate-connections %d)", c.Int("rate-requests"), c.Int("rate-connections")))
	}
	samples := c.Int("latency-samples")
	if samples == 0 {
		samples = -1 // 0 asks for none; the package reads 0 as the default
	}
	echo := c.String("echo")
	switch echo {
	case "none":
		echo = ""
	case "auto":
		if samples > 0 {
			if echo, err = datapath.EchoAddr(c.String("url")); err != nil {
				return datapath.Config{}, exitWith(2, fmt.Errorf("--echo auto: %w", err))
			}
		} else {
			echo = ""
		}
	}
	return datapath.Config{
		URL:             c.String("url"),
		Bytes:           n,
		Streams:         c.Int("streams"),
		LatencySamples:  samples,
		Echo:            echo,
		RateConnections: c.Int("rate-connections"),
		RateRequests:    c.Int("rate-requests"),
		Timeout:         c.Duration("timeout"),
	}, nil
}

func benchDatapath(c *cli.Context) error {
	if c.NArg() > 0 {
		return exitWith(2, fmt.Errorf("bench datapath: unexpected argument %q", c.Args().First()))
	}
	cfg, err := datapathConfig(c)
	if err != nil {
		return err
	}
	if c.IsSet("vmm-pid") && c.Int("vmm-pid") < 1 {
		return exitWith(2, fmt.Errorf("--vmm-pid %d: want a process id", c.Int("vmm-pid")))
	}
	cfg.Label, cfg.VMMPID = c.String("label"), c.Int("vmm-pid")
	r, err := datapath.New(cfg)
	if err != nil {
		return exitWith(2, fmt.Errorf("bench datapath: %w", err))
	}
	res, err := runBenchmark(c, "bench datapath", r.Status, r.Run)
	if err != nil {
		return err
	}
	return writeBenchResult(c, res, res.Failures)
}

func benchCombineCommand() *cli.Command {
	return &cli.Command{
		Name:      "combine",
		Usage:     "print several `bench datapath --json` results as one comparison table with ratios",
		ArgsUsage: "FILE.json...",
		Description: "Exit status: 0 every run passed, 1 a run failed (the table is printed anyway),\n" +
			"2 a file is unreadable or not a datapath result, or the baseline is not among the labels.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "baseline", Usage: "label of the run the ratios are against, e.g. \"qemu vhost=on\" (default: the first file's)"},
			&cli.BoolFlag{Name: "json", Usage: "print the comparison as JSON instead of markdown"},
		},
		Action: benchCombine,
	}
}

func benchCombine(c *cli.Context) error {
	if c.NArg() == 0 {
		return exitWith(2, errors.New("bench combine: give the JSON result files to combine"))
	}
	var runs []*datapath.Result
	for _, name := range c.Args().Slice() {
		f, err := os.Open(name)
		if err != nil {
			return exitWith(2, fmt.Errorf("bench combine: %w", err))
		}
		res, err := datapath.ReadResult(f)
		f.Close()
		if err != nil {
			return exitWith(2, fmt.Errorf("bench combine: %s: %w", name, err))
		}
		runs = append(runs, res)
	}
	cmp, err := datapath.Combine(runs, c.String("baseline"))
	if err != nil {
		return exitWith(2, fmt.Errorf("bench combine: %w", err))
	}
	var failed []string
	for _, r := range runs {
		if !r.Pass {
			failed = append(failed, fmt.Sprintf("run %q failed", r.Label))
		}
	}
	return writeBenchResult(c, cmp, failed)
}

// Both results print through writeBenchResult.
var (
	_ benchResult = (*datapath.Result)(nil)
	_ benchResult = (*datapath.Comparison)(nil)
)
