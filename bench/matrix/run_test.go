package matrix

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/datapath"
	"github.com/hlsvmm/hlsvmm/bench/report"
	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
)

// guest is the test origin on loopback standing in for the row's guest: /health answers 200
// only while a fake VM is up, and /blob is corrupted while corrupt is set.
type guest struct {
	url, echo string
	up        atomic.Bool
	corrupt   atomic.Bool
}

func newGuest(t *testing.T) *guest {
	t.Helper()
	s, err := hlsorigin.NewStream(2*time.Second, 10, 2e6, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{}
	origin := hlsorigin.NewOriginHandler(s, &hlsorigin.Metrics{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.up.Load() {
			http.Error(w, "no guest", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/blob" && g.corrupt.Load() {
			w = &flipWriter{ResponseWriter: w, at: 1000}
		}
		origin.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hlsorigin.ServeEcho(ln)
	t.Cleanup(func() { ln.Close() })
	g.url, g.echo = srv.URL, ln.Addr().String()
	return g
}

// flipWriter flips the body byte at offset at.
type flipWriter struct {
	http.ResponseWriter
	off, at int64
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if i := f.at - f.off; i >= 0 && i < int64(len(p)) {
		p = bytes.Clone(p)
		p[i] ^= 1
	}
	f.off += int64(len(p))
	return f.ResponseWriter.Write(p)
}

// fakeLauncher "boots" the guest according to the row's mode knob:
//
//	ok       up after 30 ms; stops on SIGTERM
//	noboot   the VMM ends at once with exit status 1 and some output
//	hang     never up
//	corrupt  up, but the guest sends wrong /blob bytes
//	deadpid  up, but the VMM's PID is no process (the benchmark cannot sample it) and it has ended
//	killed   up; Stop has to kill it
//	nostart  Launch fails
type fakeLauncher struct {
	t *testing.T
	g *guest

	mu         sync.Mutex
	launched   []string
	running    int
	maxRunning int
	vms        []*fakeVM
	onLaunch   func()
}

type fakeVM struct {
	l      *fakeLauncher
	mode   string
	pid    int
	exited chan struct{}
	status atomic.Value // string
	stops  atomic.Int32
	once   sync.Once
}

func (l *fakeLauncher) Launch(row Row) (VM, error) {
	if l.onLaunch != nil {
		l.onLaunch()
	}
	mode := row.Knobs()["mode"]
	l.mu.Lock()
	l.launched = append(l.launched, row.Label())
	if mode == "nostart" {
		l.mu.Unlock()
		return nil, errors.New("exec: no such file")
	}
	l.running++
	l.maxRunning = max(l.maxRunning, l.running)
	vm := &fakeVM{l: l, mode: mode, pid: os.Getpid(), exited: make(chan struct{})}
	vm.status.Store("")
	l.vms = append(l.vms, vm)
	l.mu.Unlock()
	l.g.up.Store(false)
	l.g.corrupt.Store(mode == "corrupt")
	switch mode {
	case "noboot":
		vm.end("exit status 1")
	case "ok", "corrupt", "killed":
		time.AfterFunc(30*time.Millisecond, func() { l.g.up.Store(true) })
	case "deadpid":
		vm.pid = 1 << 30
		vm.end("exit status 0")
		l.g.up.Store(true)
	}
	return vm, nil
}

func (v *fakeVM) end(status string) {
	v.once.Do(func() {
		v.status.Store(status)
		v.l.mu.Lock()
		v.l.running--
		v.l.mu.Unlock()
		v.l.g.up.Store(false)
		close(v.exited)
	})
}

func (v *fakeVM) PID() int                { return v.pid }
func (v *fakeVM) Exited() <-chan struct{} { return v.exited }
func (v *fakeVM) ExitStatus() string      { return v.status.Load().(string) }
func (v *fakeVM) Output() []string        { return []string{"hlsvmm: " + v.mode + " line 1", "line 2"} }

func (v *fakeVM) Stop() error {
	v.stops.Add(1)
	if v.mode == "killed" {
		v.end("signal: killed")
		return fmt.Errorf("not ended 1m0s after SIGTERM: %w", ErrKilled)
	}
	v.end("exit status 143")
	return nil
}

// spy wraps a Measurement to see the runner's status while the benchmark runs.
type spy struct {
	Measurement
	status func() report.Status
	seen   *[]report.Status
}

func (s spy) Run(ctx context.Context) (*datapath.Result, error) {
	*s.seen = append(*s.seen, s.status())
	return s.Measurement.Run(ctx)
}

func TestRunnerRows(t *testing.T) {
	g := newGuest(t)
	l := &fakeLauncher{t: t, g: g}
	spec, err := ParseSpec("mode=ok|noboot|hang|corrupt|deadpid|killed|nostart x=1")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var r *Runner
	var seen []report.Status
	bench := Datapath(datapath.Config{URL: g.url, Bytes: 300_000, Streams: 2, LatencySamples: 5, Echo: g.echo, Timeout: 20 * time.Second})
	r, err = New(Config{
		Spec:     spec,
		Launcher: l,
		Bench: func(label string, pid int) (Measurement, error) {
			m, err := bench(label, pid)
			if err != nil {
				return nil, err
			}
			return spy{m, r.Status, &seen}, nil
		},
		HealthURL:    g.url + "/health",
		ReadyTimeout: 400 * time.Millisecond,
		PollInterval: 10 * time.Millisecond,
		Log:          &log,
	})
	if err != nil {
		t.Fatal(err)
	}
	var launchStatus report.Status
	l.onLaunch = func() {
		if len(l.launched) == 0 { // before the first launch is recorded
			launchStatus = r.Status()
		}
	}
	res := r.Run(context.Background())

	wantLabels := []string{"mode=ok x=1", "mode=noboot x=1", "mode=hang x=1", "mode=corrupt x=1", "mode=deadpid x=1", "mode=killed x=1", "mode=nostart x=1"}
	if !reflect.DeepEqual(l.launched, wantLabels) {
		t.Errorf("launched %q, want %q", l.launched, wantLabels)
	}
	if l.maxRunning != 1 || l.running != 0 {
		t.Errorf("%d VMs ran at once, %d still run; want one at a time, none left", l.maxRunning, l.running)
	}
	for _, vm := range l.vms {
		if n := vm.stops.Load(); n != 1 {
			t.Errorf("VM %s stopped %d times, want once", vm.mode, n)
		}
	}
	if res.Pass || res.Schema != Schema || !reflect.DeepEqual(res.Knobs, []string{"mode", "x"}) || len(res.Rows) != 7 {
		t.Fatalf("result pass %v schema %q knobs %q, %d rows", res.Pass, res.Schema, res.Knobs, len(res.Rows))
	}
	for i, row := range res.Rows {
		if row.Index != i+1 || row.Label != wantLabels[i] || row.Knobs["x"] != "1" || row.RunArgs[1] != "--x=1" {
			t.Errorf("row %d: %+v", i+1, row)
		}
	}
	failure := func(i int, want string) {
		t.Helper()
		row := res.Rows[i]
		if row.Pass || len(row.Failures) == 0 || !strings.HasPrefix(row.Failures[0], want) {
			t.Errorf("row %d (%s): pass %v, failures %q; want one starting %q", i+1, row.Label, row.Pass, row.Failures, want)
		}
	}

	ok := res.Rows[0]
	if !ok.Pass || len(ok.Failures) != 0 || ok.Datapath == nil || !ok.Datapath.Pass || ok.Datapath.Label != "mode=ok x=1" ||
		ok.Datapath.VMMPID != os.Getpid() || ok.Datapath.TCPLatency == nil || ok.VMMExit != "exit status 143" || ok.VMMOutput != nil || ok.BootSeconds > 1 {
		t.Errorf("ok row: %+v", ok)
	}
	failure(1, "boot: the VMM ended (exit status 1) before "+g.url+"/health answered")
	if res.Rows[1].Datapath != nil || !reflect.DeepEqual(res.Rows[1].VMMOutput, []string{"hlsvmm: noboot line 1", "line 2"}) {
		t.Errorf("noboot row: %+v", res.Rows[1])
	}
	failure(2, "boot: "+g.url+"/health did not answer 200 within 400ms (last: status 503)")
	failure(3, "bench: guest→host: stream ")
	if f := res.Rows[3].Failures[0]; !strings.Contains(f, ": guest sent wrong bytes: content differs from the blob formula at byte 1000") {
		t.Errorf("corrupt row: %q", f)
	}
	if d := res.Rows[3].Datapath; d == nil || d.Pass || !d.HostToGuest.Verified || d.GuestToHost.Verified {
		t.Errorf("corrupt row's datapath: %+v", d)
	}
	failure(4, fmt.Sprintf("bench: VMM PID %d: ", 1<<30))
	if f := res.Rows[4].Failures[0]; !strings.HasSuffix(f, "(the VMM ended: exit status 0)") {
		t.Errorf("deadpid row does not say the VMM ended: %q", f)
	}
	failure(5, "stop: not ended 1m0s after SIGTERM: killed")
	if d := res.Rows[5].Datapath; d == nil || !d.Pass || len(res.Rows[5].Failures) != 1 || res.Rows[5].VMMExit != "signal: killed" {
		t.Errorf("killed row: %+v", res.Rows[5])
	}
	failure(6, "start: exec: no such file")
	if res.Rows[6].VMMExit != "" || res.Rows[6].VMMOutput != nil {
		t.Errorf("nostart row: %+v", res.Rows[6])
	}

	for _, want := range []string{
		"bench matrix: row 1/7 mode=ok x=1: starting --mode=ok --x=1\n",
		"bench matrix: row 1/7 mode=ok x=1: PASS (VMM exit status 143)\n",
		"bench matrix: row 2/7 mode=noboot x=1: FAIL: boot: the VMM ended",
		"bench matrix: row 7/7 mode=nostart x=1: FAIL: start: exec: no such file\n",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if !strings.HasPrefix(launchStatus.Text, "row 1/7 mode=ok x=1: starting the VMM") || launchStatus.Fraction != 0 {
		t.Errorf("status while launching row 1: %+v", launchStatus)
	}
	// The benchmark ran for rows ok, corrupt, killed (deadpid's never started).
	if len(seen) != 3 {
		t.Fatalf("benchmark status seen %d times, want 3", len(seen))
	}
	if s := seen[1]; !strings.HasPrefix(s.Text, "row 4/7 mode=corrupt x=1: ") || s.Fraction < 3.0/7 || s.Fraction >= 4.0/7 {
		t.Errorf("status while row 4 measures: %+v", s)
	}
	if s := r.Status(); s != (report.Status{Fraction: 1, Text: "done"}) {
		t.Errorf("status after the run: %+v", s)
	}
}

func TestRunnerInterrupted(t *testing.T) {
	g := newGuest(t)
	l := &fakeLauncher{t: t, g: g}
	spec, _ := ParseSpec("mode=hang|ok|ok2")
	r, err := New(Config{
		Spec: spec, Launcher: l, HealthURL: g.url + "/health", PollInterval: 10 * time.Millisecond,
		Bench: func(string, int) (Measurement, error) { t.Error("benchmark ran"); return nil, errors.New("no") },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res := r.Run(ctx)
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v to stop after the interrupt", time.Since(start))
	}
	if len(l.launched) != 1 || l.vms[0].stops.Load() != 1 || l.running != 0 {
		t.Errorf("launched %q, stops %d, running %d", l.launched, l.vms[0].stops.Load(), l.running)
	}
	want := [][]string{{"boot: interrupted"}, {"not run: interrupted"}, {"not run: interrupted"}}
	for i, row := range res.Rows {
		if row.Pass || !reflect.DeepEqual(row.Failures, want[i]) {
			t.Errorf("row %d: pass %v failures %q, want %q", i+1, row.Pass, row.Failures, want[i])
		}
	}
	if res.Pass || len(res.Rows) != 3 {
		t.Errorf("pass %v, %d rows", res.Pass, len(res.Rows))
	}
}

func TestNewRejects(t *testing.T) {
	spec, _ := ParseSpec("a=1")
	l, b := &fakeLauncher{}, Datapath(datapath.Config{})
	for name, cfg := range map[string]Config{
		"no spec":       {Launcher: l, Bench: b, HealthURL: "http://h/health"},
		"no launcher":   {Spec: spec, Bench: b, HealthURL: "http://h/health"},
		"no bencher":    {Spec: spec, Launcher: l, HealthURL: "http://h/health"},
		"no URL":        {Spec: spec, Launcher: l, Bench: b},
		"negative":      {Spec: spec, Launcher: l, Bench: b, HealthURL: "http://h/health", ReadyTimeout: -1},
		"negative poll": {Spec: spec, Launcher: l, Bench: b, HealthURL: "http://h/health", PollInterval: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
