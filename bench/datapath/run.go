package datapath

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/report"
)

// Defaults of Config's zero fields.
const (
	DefaultURL            = "http://10.177.0.10:17080"
	DefaultBytes          = 256 << 20
	DefaultStreams        = 1
	DefaultLatencySamples = 1000
	DefaultTimeout        = 10 * time.Minute
	DefaultEchoPort       = "17090"
	// DefaultRatePerConn is the rate phase's requests per connection when RateRequests is 0.
	DefaultRatePerConn = 20

	// MaxRateConnections bounds the rate phase's connections.
	MaxRateConnections = 1024

	// MaxStreamBytes is the origin's bound on one /blob or /sink transfer.
	MaxStreamBytes = 4 << 30
	maxStreams     = 64
	maxSamples     = 1_000_000
	pingBuffer     = 4 << 10 // per direction and connection: /ping's exchanges are a few hundred bytes
	echoSize       = 64
	shaTrailer     = "X-Blob-Sha256"
)

// Config says what to measure. Zero fields take the defaults above, except Echo ("" = no TCP
// echo latency), VMMPID (0 = no CPU accounting) and RateConnections (0 = no rate phase).
type Config struct {
	URL             string        // the origin, http://HOST:PORT
	Label           string        // names the run in combined tables (default: the URL's host)
	Bytes           int64         // per direction, split over the streams
	Streams         int           // parallel connections per direction
	LatencySamples  int           // requests (and echo round trips); negative: no latency phase
	Echo            string        // HOST:PORT of the TCP echo
	RateConnections int           // kept-alive connections of the request-rate phase
	RateRequests    int           // requests of the rate phase over all connections (default 20 per connection)
	VMMPID          int           // the VMM process whose CPU time is sampled
	Timeout         time.Duration // per phase
	Proc            string        // procfs root (default /proc), for tests
}

// Runner runs one measurement; Status may be called from another goroutine meanwhile.
type Runner struct {
	cfg  Config
	base *url.URL
	blob *blob

	phase    atomic.Value // string
	moved    atomic.Int64 // bytes of the current transfer phase
	samples  atomic.Int64 // latency samples taken
	finished atomic.Int64 // phases done, of phases()
}

// New checks cfg, fills in defaults and returns a Runner.
func New(cfg Config) (*Runner, error) {
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	u, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("url %q: want http://HOST:PORT of the origin", cfg.URL)
	}
	u.Path = ""
	if cfg.Bytes == 0 {
		cfg.Bytes = DefaultBytes
	}
	if cfg.Streams == 0 {
		cfg.Streams = DefaultStreams
	}
	if cfg.LatencySamples == 0 {
		cfg.LatencySamples = DefaultLatencySamples
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RateRequests == 0 && cfg.RateConnections > 0 {
		cfg.RateRequests = DefaultRatePerConn * cfg.RateConnections
	}
	if cfg.Proc == "" {
		cfg.Proc = "/proc"
	}
	if cfg.Label == "" {
		cfg.Label = u.Host
	}
	switch {
	case cfg.Streams < 1 || cfg.Streams > maxStreams:
		return nil, fmt.Errorf("streams %d: want 1..%d", cfg.Streams, maxStreams)
	case cfg.Bytes < int64(cfg.Streams):
		return nil, fmt.Errorf("bytes %d: want at least one per stream (%d)", cfg.Bytes, cfg.Streams)
	case (cfg.Bytes+int64(cfg.Streams)-1)/int64(cfg.Streams) > MaxStreamBytes:
		return nil, fmt.Errorf("bytes %d over %d streams: at most %s per stream", cfg.Bytes, cfg.Streams, report.Size(MaxStreamBytes))
	case cfg.LatencySamples > maxSamples:
		return nil, fmt.Errorf("latency samples %d: at most %d", cfg.LatencySamples, maxSamples)
	case cfg.RateConnections < 0 || cfg.RateConnections > MaxRateConnections:
		return nil, fmt.Errorf("rate connections %d: want 0 (no rate phase) to %d", cfg.RateConnections, MaxRateConnections)
	case cfg.RateConnections == 0 && cfg.RateRequests != 0:
		return nil, fmt.Errorf("rate requests %d without rate connections", cfg.RateRequests)
	case cfg.RateRequests < cfg.RateConnections || cfg.RateRequests > maxSamples:
		return nil, fmt.Errorf("rate requests %d: want one per connection (%d) to %d", cfg.RateRequests, cfg.RateConnections, maxSamples)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("timeout %v: want a positive duration", cfg.Timeout)
	case cfg.VMMPID < 0:
		return nil, fmt.Errorf("VMM PID %d: want a process id", cfg.VMMPID)
	}
	if cfg.Echo != "" {
		if _, _, err := net.SplitHostPort(cfg.Echo); err != nil {
			return nil, fmt.Errorf("echo address %q: want HOST:PORT: %w", cfg.Echo, err)
		}
	}
	if cfg.VMMPID != 0 {
		if _, err := sampleCPU(cfg.Proc, cfg.VMMPID); err != nil {
			return nil, fmt.Errorf("VMM PID %d: %w", cfg.VMMPID, err)
		}
	}
	r := &Runner{cfg: cfg, base: u, blob: newBlob()}
	r.phase.Store("starting")
	return r, nil
}

// EchoAddr derives the TCP echo address from an origin URL: its host with port 17090.
func EchoAddr(originURL string) (string, error) {
	u, err := url.Parse(originURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("url %q: no host to derive the echo address from", originURL)
	}
	return net.JoinHostPort(u.Hostname(), DefaultEchoPort), nil
}

// Status reports progress for report.Progress.
func (r *Runner) Status() report.Status {
	phase, _ := r.phase.Load().(string)
	done := float64(r.finished.Load())
	switch phase {
	case "guest→host", "host→guest":
		done += float64(r.moved.Load()) / float64(r.cfg.Bytes)
		phase = fmt.Sprintf("%s %s/%s", phase, report.Size(r.moved.Load()), report.Size(r.cfg.Bytes))
	case "HTTP latency", "TCP latency":
		if r.cfg.LatencySamples > 0 {
			done += float64(r.samples.Load()) / float64(r.cfg.LatencySamples)
		}
		phase = fmt.Sprintf("%s %d/%d", phase, r.samples.Load(), r.cfg.LatencySamples)
	case "HTTP rate":
		done += float64(r.samples.Load()) / float64(r.cfg.RateRequests)
		phase = fmt.Sprintf("%s %d/%d over %d connections", phase, r.samples.Load(), r.cfg.RateRequests, r.cfg.RateConnections)
	}
	if phase == "done" {
		return report.Status{Fraction: 1, Text: phase}
	}
	return report.Status{Fraction: done / float64(r.phases()), Text: phase}
}

// phases is the number of measuring phases this run has.
func (r *Runner) phases() int {
	n := 2
	if r.cfg.LatencySamples > 0 {
		n++
		if r.cfg.Echo != "" {
			n++
		}
	}
	if r.cfg.RateConnections > 0 {
		n++
	}
	return n
}

func (r *Runner) enter(phase string) {
	r.moved.Store(0)
	r.samples.Store(0)
	r.phase.Store(phase)
}

func (r *Runner) leave() { r.finished.Add(1) }

// newClient is an HTTP client for conns kept-alive connections to the origin, each with
// buffers of buf bytes.
func newClient(conns, buf int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		ReadBufferSize:      buf,
		WriteBufferSize:     buf,
		ForceAttemptHTTP2:   false,
	}}
}

func (r *Runner) endpoint(path string, q url.Values) string {
	u := *r.base
	u.Path = path
	u.RawQuery = q.Encode()
	return u.String()
}

// Run measures; it returns an error only when nothing could be measured (origin unreachable,
// VMM gone, ctx cancelled before the first phase). Failed checks land in Result.Failures.
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	res := &Result{
		Schema: Schema, Label: r.cfg.Label, URL: r.base.String(), Echo: r.cfg.Echo,
		Bytes: r.cfg.Bytes, Streams: r.cfg.Streams, VMMPID: r.cfg.VMMPID, Failures: []string{},
	}
	if err := r.preflight(ctx); err != nil {
		return nil, err
	}
	var err error
	res.GuestToHost, err = r.transfer(ctx, "guest→host", r.download)
	if err != nil {
		return nil, err
	}
	res.HostToGuest, err = r.transfer(ctx, "host→guest", r.upload)
	if err != nil {
		return nil, err
	}
	for _, t := range []struct {
		name string
		tr   Transfer
	}{{"guest→host", res.GuestToHost}, {"host→guest", res.HostToGuest}} {
		if t.tr.ErrorText != "" {
			res.Failures = append(res.Failures, t.name+": "+t.tr.ErrorText)
		}
	}
	if r.cfg.LatencySamples > 0 {
		r.enter("HTTP latency")
		s, err := r.httpLatency(ctx)
		if err != nil {
			res.Failures = append(res.Failures, "HTTP latency: "+err.Error())
		}
		res.HTTPLatency = report.Summarize(s)
		r.leave()
		if r.cfg.Echo != "" {
			r.enter("TCP latency")
			s, err := r.echoLatency(ctx)
			if err != nil {
				res.Failures = append(res.Failures, "TCP latency: "+err.Error())
			}
			sum := report.Summarize(s)
			res.TCPLatency = &sum
			r.leave()
		}
	}
	if r.cfg.RateConnections > 0 {
		r.enter("HTTP rate")
		var err error
		res.HTTPRate, err = r.httpRate(ctx)
		if err != nil {
			res.Failures = append(res.Failures, "HTTP rate: "+err.Error())
		}
		r.leave()
	}
	if err := ctx.Err(); err != nil {
		res.Failures = append(res.Failures, "interrupted")
	}
	r.phase.Store("done")
	res.Pass = len(res.Failures) == 0
	return res, nil
}

// preflight checks the origin answers /ping.
func (r *Runner) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c := newClient(1, pingBuffer)
	defer c.CloseIdleConnections()
	if err := ping(ctx, c, r.endpoint("/ping", nil)); err != nil {
		return fmt.Errorf("origin at %s does not answer /ping (is the guest up, with the traffic endpoints?): %w", r.base, err)
	}
	return nil
}

func ping(ctx context.Context, c *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return fmt.Errorf("read /ping body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "pong" {
		return fmt.Errorf("/ping answered %d %q, want 200 \"pong\"", resp.StatusCode, body)
	}
	return nil
}

// shares splits n bytes over k streams, the remainder to the first.
func shares(n int64, k int) []int64 {
	s := make([]int64, k)
	for i := range s {
		s[i] = n / int64(k)
	}
	s[0] += n % int64(k)
	return s
}

// transfer runs one direction: every stream at once through move, timed, with CPU sampled around it.
func (r *Runner) transfer(ctx context.Context, name string, move func(ctx context.Context, c *http.Client, n int64) error) (Transfer, error) {
	r.enter(name)
	defer r.leave()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	c := newClient(r.cfg.Streams, 64<<10)
	defer c.CloseIdleConnections()
	var before cpuSample
	if r.cfg.VMMPID != 0 {
		var err error
		if before, err = sampleCPU(r.cfg.Proc, r.cfg.VMMPID); err != nil {
			return Transfer{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	start := time.Now()
	errs := make([]error, r.cfg.Streams)
	var wg sync.WaitGroup
	for i, n := range shares(r.cfg.Bytes, r.cfg.Streams) {
		wg.Go(func() {
			if err := move(ctx, c, n); err != nil {
				errs[i] = fmt.Errorf("stream %d: %w", i, err)
				cancel() // the figures are void: stop the others
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	t := Transfer{Bytes: r.moved.Load(), Seconds: report.Round(elapsed.Seconds(), 6)}
	if err := errors.Join(errs...); err != nil {
		t.ErrorText = firstError(errs, "streams")
	} else {
		t.Verified = true
		t.BPS = report.Round(report.BitsPerSecond(t.Bytes, elapsed), 0)
		t.MiBPerS = report.Round(report.MiBps(t.BPS), 3)
		t.MbitPerS = report.Round(report.Mbps(t.BPS), 3)
	}
	if r.cfg.VMMPID != 0 {
		after, err := sampleCPU(r.cfg.Proc, r.cfg.VMMPID)
		if err != nil {
			return Transfer{}, fmt.Errorf("%s: %w (did the VMM exit?)", name, err)
		}
		vmm, vhost, workers := cpuDelta(before, after)
		c := &CPU{
			VMMSeconds: report.Round(vmm.Seconds(), 2), VhostSeconds: report.Round(vhost.Seconds(), 2), VhostWorkers: workers,
			VMMPercent:      report.Round(100*vmm.Seconds()/elapsed.Seconds(), 1),
			VhostWorkersPct: report.Round(100*vhost.Seconds()/elapsed.Seconds(), 1),
		}
		if t.Bytes > 0 {
			gib := float64(t.Bytes) / (1 << 30)
			c.VMMPerGiB = report.Round(vmm.Seconds()/gib, 3)
			c.TotalPerGiB = report.Round((vmm+vhost).Seconds()/gib, 3)
		}
		t.CPU = c
	}
	return t, nil
}

// firstError is the text of the first error that is not a cancellation caused by another
// stream's (or connection's: what) failure, with how many more failed on their own.
func firstError(errs []error, what string) string {
	var first error
	failed, cancelled := 0, 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, context.Canceled) {
			cancelled++
		} else {
			failed++
		}
		if first == nil || (errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	if failed == 0 {
		failed = cancelled
	}
	if failed > 1 {
		return fmt.Sprintf("%v (%d %s failed)", first, failed, what)
	}
	return first.Error()
}

// download fetches n blob bytes and verifies them against the formula and the trailer.
func (r *Runner) download(ctx context.Context, c *http.Client, n int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.endpoint("/blob", url.Values{"bytes": {fmt.Sprint(n)}}), nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET /blob: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("GET /blob: status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	chk := newBlobChecker(r.blob, &r.moved)
	// Read one byte more than asked, to see a body that is too long.
	got, err := io.CopyBuffer(chk, io.LimitReader(resp.Body, n+1), make([]byte, 64<<10))
	switch {
	case errors.Is(err, errMismatch):
		return fmt.Errorf("guest sent wrong bytes: %w", err)
	case err != nil:
		return fmt.Errorf("read /blob after %d of %d bytes: %w", got, n, err)
	case got != n:
		return fmt.Errorf("/blob body has %d bytes, want %d", got, n)
	}
	// The trailer is there once the body has been read to EOF.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("read /blob trailer: %w", err)
	}
	mine := hex.EncodeToString(chk.sum.Sum(nil))
	switch theirs := resp.Trailer.Get(shaTrailer); {
	case theirs == "":
		return fmt.Errorf("/blob without a %s trailer: cannot check what the guest sent", shaTrailer)
	case theirs != mine:
		return fmt.Errorf("SHA-256 mismatch: received %s, guest sent %s", mine, theirs)
	}
	return nil
}

// upload sends n blob bytes to /sink and checks the guest's count and SHA-256.
func (r *Runner) upload(ctx context.Context, c *http.Client, n int64) error {
	body := newBlobReader(r.blob, n, &r.moved)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, r.endpoint("/sink", nil), body)
	if err != nil {
		return err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("PUT /sink: %w", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("read the /sink reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT /sink: status %d: %s", resp.StatusCode, bytes.TrimSpace(reply))
	}
	var got struct {
		Bytes  *int64 `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(reply, &got); err != nil || got.Bytes == nil || got.SHA256 == "" {
		return fmt.Errorf("/sink reply %q: want {\"bytes\":N,\"sha256\":\"...\"}", bytes.TrimSpace(reply))
	}
	mine := hex.EncodeToString(body.sum.Sum(nil))
	switch {
	case *got.Bytes != n:
		return fmt.Errorf("guest received %d bytes, %d were sent", *got.Bytes, n)
	case got.SHA256 != mine:
		return fmt.Errorf("SHA-256 mismatch: sent %s, guest received %s", mine, got.SHA256)
	}
	return nil
}

// httpLatency times LatencySamples GET /ping on one kept-alive connection after a warm-up.
func (r *Runner) httpLatency(ctx context.Context) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	c := newClient(1, pingBuffer)
	defer c.CloseIdleConnections()
	u := r.endpoint("/ping", nil)
	if err := ping(ctx, c, u); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	samples := make([]time.Duration, 0, r.cfg.LatencySamples)
	for range r.cfg.LatencySamples {
		t0 := time.Now()
		if err := ping(ctx, c, u); err != nil {
			return samples, fmt.Errorf("request %d: %w", len(samples)+1, err)
		}
		samples = append(samples, time.Since(t0))
		r.samples.Add(1)
	}
	return samples, nil
}

// echoLatency times LatencySamples 64-byte round trips through the TCP echo, checking each.
func (r *Runner) echoLatency(ctx context.Context) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", r.cfg.Echo)
	if err != nil {
		return nil, fmt.Errorf("connect to the echo port: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.SetNoDelay(true); err != nil {
			return nil, fmt.Errorf("set TCP_NODELAY: %w", err)
		}
	}
	out, in := make([]byte, echoSize), make([]byte, echoSize)
	samples := make([]time.Duration, 0, r.cfg.LatencySamples)
	for i := range r.cfg.LatencySamples + 1 { // round 0 warms up
		r.blob.Fill(out, int64(i)*echoSize)
		t0 := time.Now()
		if _, err := conn.Write(out); err != nil {
			return samples, fmt.Errorf("round trip %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(conn, in); err != nil {
			return samples, fmt.Errorf("round trip %d: read: %w", i, err)
		}
		d := time.Since(t0)
		if !bytes.Equal(in, out) {
			return samples, fmt.Errorf("round trip %d: echo returned different bytes", i)
		}
		if i > 0 {
			samples = append(samples, d)
			r.samples.Add(1)
		}
	}
	return samples, nil
}

// httpRate issues RateRequests GET /ping over RateConnections kept-alive connections at once,
// each connection's requests back to back, until the shared total is done. Every connection
// is opened and warmed up with one request first; the clock runs from when all of them start
// counting to the last answer. A failed request stops the phase: its rate is then 0.
func (r *Runner) httpRate(ctx context.Context) (*Rate, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	n, total := r.cfg.RateConnections, int64(r.cfg.RateRequests)
	rate := &Rate{Connections: n}
	u := r.endpoint("/ping", nil)
	clients := make([]*http.Client, n) // one each: exactly n connections
	for i := range clients {
		clients[i] = newClient(1, pingBuffer)
		defer clients[i].CloseIdleConnections()
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			if err := ping(ctx, c, u); err != nil {
				errs[i] = fmt.Errorf("connection %d: warm-up: %w", i, err)
				cancel()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return rate, errors.New(firstError(errs, "connections"))
	}
	var claimed atomic.Int64
	samples := make([][]time.Duration, n)
	start := time.Now()
	for i, c := range clients {
		wg.Go(func() {
			for claimed.Add(1) <= total {
				t0 := time.Now()
				if err := ping(ctx, c, u); err != nil {
					errs[i] = fmt.Errorf("connection %d, request %d: %w", i, len(samples[i])+1, err)
					cancel() // the rate is void: stop the others
					return
				}
				samples[i] = append(samples[i], time.Since(t0))
				r.samples.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(samples...)
	rate.Requests, rate.Seconds = len(all), report.Round(elapsed.Seconds(), 6)
	rate.Latency = report.Summarize(all)
	if err := errors.Join(errs...); err != nil {
		return rate, errors.New(firstError(errs, "connections"))
	}
	rate.PerSecond = report.Round(float64(rate.Requests)/elapsed.Seconds(), 1)
	return rate, nil
}
