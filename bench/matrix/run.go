package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/datapath"
	"github.com/hlsvmm/hlsvmm/bench/report"
)

// Defaults of Config's zero fields.
const (
	DefaultReadyTimeout = 5 * time.Minute // a nested test bed boots in 1-2 minutes
	DefaultPollInterval = time.Second
)

// A Launcher starts the VMM of one row.
type Launcher interface {
	Launch(row Row) (VM, error)
}

// A VM is a started VMM process.
type VM interface {
	// PID is the VMM's process id, whose CPU time the benchmark samples.
	PID() int
	// Exited is closed once the process has ended.
	Exited() <-chan struct{}
	// ExitStatus says how it ended ("exit status 143", "signal: killed"); "" while it runs.
	ExitStatus() string
	// Stop ends the process gracefully if it still runs (it tears its network down) and waits
	// for it; an error says it had to be killed or did not end. Idempotent.
	Stop() error
	// Output is the last lines the process wrote (stdout and stderr).
	Output() []string
}

// A Measurement is one benchmark run; *datapath.Runner is one.
type Measurement interface {
	Run(ctx context.Context) (*datapath.Result, error)
	Status() report.Status
}

// A Bencher prepares the measurement of a booted row whose VMM is process pid.
type Bencher func(label string, pid int) (Measurement, error)

// Datapath is the Bencher of `bench --matrix`: bench/datapath with cfg, labelled with the row
// and sampling the row's VMM.
func Datapath(cfg datapath.Config) Bencher {
	return func(label string, pid int) (Measurement, error) {
		c := cfg
		c.Label, c.VMMPID = label, pid
		return datapath.New(c)
	}
}

// Config says what the matrix runs.
type Config struct {
	Spec         Spec
	Launcher     Launcher
	Bench        Bencher
	HealthURL    string        // GET until it answers 200: the guest is up
	ReadyTimeout time.Duration // launch to /health answering
	PollInterval time.Duration // between /health attempts
	Log          io.Writer     // one line per row event (stderr); nil: none
}

// Runner runs the rows one after the other; Status may be called meanwhile.
type Runner struct {
	cfg  Config
	rows []Row

	mu     sync.Mutex
	row    int // 0-based row running
	phase  string
	since  time.Time
	active Measurement // the benchmark running, for Status
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Runner, error) {
	switch {
	case len(cfg.Spec) == 0:
		return nil, errors.New("no knobs")
	case cfg.Launcher == nil || cfg.Bench == nil:
		return nil, errors.New("a launcher and a bencher are needed")
	case cfg.HealthURL == "":
		return nil, errors.New("no health URL")
	case cfg.ReadyTimeout < 0 || cfg.PollInterval < 0:
		return nil, errors.New("negative timeout")
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return &Runner{cfg: cfg, rows: cfg.Spec.Rows(), phase: "starting", since: time.Now()}, nil
}

// Status reports progress for report.Progress: rows done plus the running benchmark's share.
func (r *Runner) Status() report.Status {
	r.mu.Lock()
	row, phase, since, m := r.row, r.phase, r.since, r.active
	r.mu.Unlock()
	n := len(r.rows)
	if row >= n {
		return report.Status{Fraction: 1, Text: "done"}
	}
	done := float64(row)
	text := fmt.Sprintf("row %d/%d %s: %s %.0fs", row+1, n, r.rows[row].Label(), phase, time.Since(since).Seconds())
	if m != nil {
		s := m.Status()
		done += s.Fraction
		text = fmt.Sprintf("row %d/%d %s: %s", row+1, n, r.rows[row].Label(), s.Text)
	}
	return report.Status{Fraction: done / float64(n), Text: text}
}

func (r *Runner) enter(row int, phase string, m Measurement) {
	r.mu.Lock()
	r.row, r.phase, r.since, r.active = row, phase, time.Now(), m
	r.mu.Unlock()
}

func (r *Runner) logf(row Row, format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "bench matrix: row %d/%d %s: %s\n", row.Index, len(r.rows), row.Label(), fmt.Sprintf(format, args...))
}

// Run runs every row. It never fails as a whole: a row that could not be measured is a failed
// row. Once ctx is done the running row's VM is stopped and the rows after it are not run
// (failed rows, "not run: interrupted").
func (r *Runner) Run(ctx context.Context) *Result {
	res := &Result{Schema: Schema, Knobs: r.cfg.Spec.Names(), Rows: []RowResult{}, Pass: true}
	for i, row := range r.rows {
		var rr RowResult
		if ctx.Err() != nil {
			rr = newRowResult(row)
			rr.fail("not run: interrupted")
		} else {
			rr = r.runRow(ctx, i, row)
		}
		res.Pass = res.Pass && rr.Pass
		res.Rows = append(res.Rows, rr)
	}
	r.enter(len(r.rows), "done", nil)
	return res
}

// runRow boots, measures and stops one row.
func (r *Runner) runRow(ctx context.Context, i int, row Row) (rr RowResult) {
	rr = newRowResult(row)
	r.enter(i, "starting the VMM", nil)
	r.logf(row, "starting %s", strings.Join(row.Args(), " "))
	vm, err := r.cfg.Launcher.Launch(row)
	if err != nil {
		rr.fail("start: " + err.Error())
		r.logf(row, "FAIL: %s", strings.Join(rr.Failures, "; "))
		return rr
	}
	defer func() {
		r.enter(i, "stopping the VMM", nil)
		if err := vm.Stop(); err != nil {
			rr.fail("stop: " + err.Error())
		}
		rr.VMMExit = vm.ExitStatus()
		if !rr.Pass {
			rr.VMMOutput = vm.Output()
			r.logf(row, "FAIL: %s", strings.Join(rr.Failures, "; "))
		} else {
			r.logf(row, "PASS (VMM %s)", rr.VMMExit)
		}
	}()

	r.enter(i, "booting", nil)
	start := time.Now()
	if err := r.waitReady(ctx, vm); err != nil {
		rr.fail("boot: " + err.Error())
		return rr
	}
	rr.BootSeconds = report.Round(time.Since(start).Seconds(), 1)
	r.logf(row, "guest up after %.0f s (VMM PID %d); measuring", rr.BootSeconds, vm.PID())

	m, err := r.cfg.Bench(row.Label(), vm.PID())
	if err != nil {
		rr.fail("bench: " + err.Error() + exitedNote(vm))
		return rr
	}
	r.enter(i, "measuring", m)
	dp, err := m.Run(ctx)
	r.enter(i, "measured", nil)
	if err != nil {
		rr.fail("bench: " + err.Error() + exitedNote(vm))
		return rr
	}
	rr.Datapath = dp
	for _, f := range dp.Failures {
		rr.fail("bench: " + f)
	}
	if !dp.Pass && len(dp.Failures) == 0 {
		rr.fail("bench: the datapath result did not pass")
	}
	if len(rr.Failures) > 0 {
		if n := exitedNote(vm); n != "" {
			rr.fail("VMM" + n)
		}
	}
	return rr
}

// exitedNote says the VMM has ended, if it has.
func exitedNote(vm VM) string {
	select {
	case <-vm.Exited():
		return fmt.Sprintf(" (the VMM ended: %s)", vm.ExitStatus())
	default:
		return ""
	}
}

// waitReady polls the health URL until it answers 200, the VM exits, the timeout passes or
// ctx is done.
func (r *Runner) waitReady(ctx context.Context, vm VM) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReadyTimeout)
	defer cancel()
	// No proxy from the environment: the guest is on a local bridge.
	c := &http.Client{Transport: &http.Transport{
		Proxy:             nil,
		DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		DisableKeepAlives: true,
	}}
	defer c.CloseIdleConnections()
	tick := time.NewTicker(r.cfg.PollInterval)
	defer tick.Stop()
	var last error
	for {
		err := healthy(ctx, c, r.cfg.HealthURL)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil { // not the attempt the deadline cut short
			last = err
		}
		select {
		case <-vm.Exited():
			return fmt.Errorf("the VMM ended (%s) before %s answered", vm.ExitStatus(), r.cfg.HealthURL)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s did not answer 200 within %v (last: %v)", r.cfg.HealthURL, r.cfg.ReadyTimeout, last)
			}
			return errors.New("interrupted")
		case <-tick.C:
		}
	}
}

func healthy(ctx context.Context, c *http.Client, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
