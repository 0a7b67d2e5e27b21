package datapath

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/report"
	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
	"golang.org/x/sys/unix"
)

// origin runs the real test origin in-process on loopback, optionally behind wrap, and its echo.
func origin(t *testing.T, wrap func(http.Handler) http.Handler) (url, echo string) {
	t.Helper()
	s, err := hlsorigin.NewStream(2*time.Second, 10, 2e6, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = hlsorigin.NewOriginHandler(s, &hlsorigin.Metrics{})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hlsorigin.ServeEcho(ln)
	t.Cleanup(func() { ln.Close() })
	return srv.URL, ln.Addr().String()
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestBlobMatchesOrigin(t *testing.T) {
	b := newBlob()
	for _, tc := range []struct{ off, n int64 }{{0, 3*blobBlockSize + 5}, {5, 3}, {blobBlockSize - 2, 20}, {1 << 32, 100}} {
		mine, theirs := make([]byte, tc.n), make([]byte, tc.n)
		b.Fill(mine, tc.off)
		hlsorigin.BlobFill(theirs, tc.off)
		if !bytes.Equal(mine, theirs) {
			t.Errorf("blob at %d, %d bytes differs from the origin's", tc.off, tc.n)
		}
	}
	if hlsorigin.MaxTrafficBytes != MaxStreamBytes {
		t.Errorf("per-stream bound %d, origin's %d", MaxStreamBytes, hlsorigin.MaxTrafficBytes)
	}
}

func TestThroughputAndLatencyOnLoopback(t *testing.T) {
	url, echo := origin(t, nil)
	for _, streams := range []int{1, 3} {
		res := run(t, Config{URL: url, Label: "loop", Bytes: 2<<20 + 7, Streams: streams, LatencySamples: 50, Echo: echo, VMMPID: os.Getpid()})
		if !res.Pass || len(res.Failures) != 0 {
			t.Fatalf("%d streams: failed: %q", streams, res.Failures)
		}
		for name, tr := range map[string]Transfer{"guest→host": res.GuestToHost, "host→guest": res.HostToGuest} {
			if !tr.Verified || tr.Bytes != 2<<20+7 || tr.Seconds <= 0 || tr.BPS <= 0 || tr.MiBPerS <= 0 || tr.CPU == nil {
				t.Errorf("%d streams, %s: %+v", streams, name, tr)
			}
			if want := report.Round(float64(tr.Bytes)*8/tr.Seconds, 0); tr.BPS < want*0.99 || tr.BPS > want*1.01 {
				t.Errorf("%s: %v bit/s, bytes/seconds give %v", name, tr.BPS, want)
			}
		}
		if res.HTTPLatency.Count != 50 || res.HTTPLatency.P50 <= 0 || res.HTTPLatency.P99 < res.HTTPLatency.P50 {
			t.Errorf("HTTP latency %+v", res.HTTPLatency)
		}
		if res.TCPLatency == nil || res.TCPLatency.Count != 50 || res.TCPLatency.Max < res.TCPLatency.P99 {
			t.Errorf("TCP latency %+v", res.TCPLatency)
		}
	}
}

func TestVerificationCatchesCorruption(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(http.Handler) http.Handler
		want string
	}{
		{"blob byte flipped", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/blob" {
					w = &flipWriter{ResponseWriter: w, at: 100_000}
				}
				h.ServeHTTP(w, r)
			})
		}, "guest→host: stream 0: guest sent wrong bytes: content differs from the blob formula at byte 100000"},
		{"blob trailer wrong", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				if r.URL.Path == "/blob" {
					w.Header().Set(shaTrailer, strings.Repeat("0", 64))
				}
			})
		}, "guest→host: stream 0: SHA-256 mismatch"},
		{"blob trailer missing", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/blob" {
					w = &noTrailerWriter{w}
				}
				h.ServeHTTP(w, r)
			})
		}, "guest→host: stream 0: /blob without a X-Blob-Sha256 trailer"},
		{"blob short", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/blob" {
					r.URL.RawQuery = "bytes=1000"
				}
				h.ServeHTTP(w, r)
			})
		}, "guest→host: stream 0: /blob body has 1000 bytes, want 300000"},
		{"sink hash wrong", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/sink" {
					r.Body = io.NopCloser(io.MultiReader(io.LimitReader(r.Body, 5), strings.NewReader("X"), r.Body))
				}
				h.ServeHTTP(w, r)
			})
		}, "host→guest: stream 0: guest received 300001 bytes, 300000 were sent"},
		{"sink same length, other content", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/sink" {
					body := r.Body
					r.Body = io.NopCloser(io.MultiReader(io.LimitReader(body, 5), strings.NewReader("X"), &skipReader{body, 1}))
				}
				h.ServeHTTP(w, r)
			})
		}, "host→guest: stream 0: SHA-256 mismatch: sent "},
		{"sink error", func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/sink" {
					http.Error(w, "disk full", 500)
					return
				}
				h.ServeHTTP(w, r)
			})
		}, "host→guest: stream 0: PUT /sink: status 500: disk full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := origin(t, tc.wrap)
			res := run(t, Config{URL: url, Bytes: 300_000, LatencySamples: 5})
			if res.Pass || !slices.ContainsFunc(res.Failures, func(f string) bool { return strings.HasPrefix(f, tc.want) }) {
				t.Errorf("failures %q, want one starting %q", res.Failures, tc.want)
			}
			var b bytes.Buffer
			res.WriteMarkdown(&b)
			if !strings.Contains(b.String(), "— FAIL") || !strings.Contains(b.String(), "NOT verified") {
				t.Errorf("markdown does not show the failure:\n%s", b.String())
			}
		})
	}
}

// flipWriter flips one body byte at offset at.
type flipWriter struct {
	http.ResponseWriter
	off, at int64
}

func (f *flipWriter) Write(p []byte) (int, error) {
	if i := f.at - f.off; i >= 0 && i < int64(len(p)) {
		p = bytes.Clone(p)
		p[i] ^= 0x40
	}
	f.off += int64(len(p))
	return f.ResponseWriter.Write(p)
}

// noTrailerWriter hides the headers the handler sets after the body (its trailer).
type noTrailerWriter struct{ http.ResponseWriter }

func (n *noTrailerWriter) Header() http.Header {
	h := n.ResponseWriter.Header()
	h.Del("Trailer")
	return h
}

func (n *noTrailerWriter) WriteHeader(code int) {
	n.ResponseWriter.Header().Del("Trailer")
	n.ResponseWriter.WriteHeader(code)
}

func (n *noTrailerWriter) Write(p []byte) (int, error) {
	n.ResponseWriter.Header().Del("Trailer")
	return n.ResponseWriter.Write(p)
}

// skipReader drops its first n bytes.
type skipReader struct {
	r io.Reader
	n int64
}

func (s *skipReader) Read(p []byte) (int, error) {
	if s.n > 0 {
		k, err := io.CopyN(io.Discard, s.r, s.n)
		s.n -= k
		if err != nil {
			return 0, err
		}
	}
	return s.r.Read(p)
}

func TestUnreachableOriginIsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := New(Config{URL: "http://" + addr, Bytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "does not answer /ping") {
		t.Errorf("Run against a closed port: %+v, %v", res, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "ftp://x"}, {URL: "http://"}, {URL: "http://h:1/blob"}, {URL: "http://h:1/?a=b"},
		{Streams: -1}, {Streams: 65}, {Bytes: 2, Streams: 3}, {Bytes: 9 << 30, Streams: 2},
		{LatencySamples: 2_000_000}, {Timeout: -time.Second}, {Echo: "nohost"}, {VMMPID: -5},
		{VMMPID: 1 << 30}, // no such process
		{RateConnections: -1}, {RateConnections: MaxRateConnections + 1}, {RateRequests: 10},
		{RateConnections: 1, RateRequests: -1}, {RateConnections: 10, RateRequests: 9}, {RateConnections: 1, RateRequests: 2_000_000},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(Config{Bytes: 8 << 30, Streams: 2}); err != nil {
		t.Errorf("8 GiB over 2 streams: %v", err)
	}
	if r, err := New(Config{RateConnections: MaxRateConnections}); err != nil || r.cfg.RateRequests != DefaultRatePerConn*MaxRateConnections {
		t.Errorf("%d rate connections: %v, requests %d", MaxRateConnections, err, r.cfg.RateRequests)
	}
}

// pingLog records the client address of every GET /ping the origin answers.
type pingLog struct {
	mu    sync.Mutex
	addrs []string
}

func (p *pingLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			p.mu.Lock()
			p.addrs = append(p.addrs, r.RemoteAddr)
			p.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func TestHTTPRateOnLoopback(t *testing.T) {
	var log pingLog
	url, _ := origin(t, log.wrap)
	// No latency phase: the rate phase runs all the same.
	res := run(t, Config{URL: url, Bytes: 1000, LatencySamples: -1, RateConnections: 8, RateRequests: 203})
	if !res.Pass || res.HTTPRate == nil {
		t.Fatalf("failures %q, rate %+v", res.Failures, res.HTTPRate)
	}
	q := res.HTTPRate
	if q.Connections != 8 || q.Requests != 203 || q.Latency.Count != 203 || q.Seconds <= 0 || q.PerSecond <= 0 {
		t.Errorf("rate %+v", q)
	}
	if want := float64(q.Requests) / q.Seconds; q.PerSecond < want*0.99 || q.PerSecond > want*1.01 {
		t.Errorf("%v requests/s, requests/seconds give %v", q.PerSecond, want)
	}
	if q.Latency.P50 <= 0 || q.Latency.P99 < q.Latency.P50 || q.Latency.Max < q.Latency.P99 {
		t.Errorf("rate latency %+v", q.Latency)
	}
	// Each connection's requests follow one another within the wall time, so their latencies
	// add up to at most connections × seconds.
	if sum, most := q.Latency.Mean*float64(q.Latency.Count), float64(q.Connections)*q.Seconds*1000; sum > most*1.01 {
		t.Errorf("latencies add up to %.3f ms, more than %d connections × %.3f s", sum, q.Connections, q.Seconds)
	}
	if res.HTTPLatency.Count != 0 || res.TCPLatency != nil {
		t.Errorf("latency measured with LatencySamples -1: %+v %+v", res.HTTPLatency, res.TCPLatency)
	}
	// The origin saw the preflight, one warm-up per connection and the counted requests, on
	// exactly 8 connections after the preflight's.
	if len(log.addrs) != 1+8+203 {
		t.Errorf("origin answered %d /ping, want %d", len(log.addrs), 1+8+203)
	}
	conns := map[string]int{}
	for _, a := range log.addrs[1:] {
		conns[a]++
	}
	if len(conns) != 8 {
		t.Errorf("rate phase used %d connections, want 8: %v", len(conns), conns)
	}
	var b bytes.Buffer
	if err := res.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf("| HTTP GET /ping, 8 connections | %s | %s | %s | 203 | %.0f |",
		report.Ms(q.Latency.P50), report.Ms(q.Latency.P99), report.Ms(q.Latency.Max), q.PerSecond)
	if !strings.Contains(squeeze(b.String()), row) || !strings.Contains(b.String(), "| req/s |") {
		t.Errorf("markdown lacks %q:\n%s", row, b.String())
	}
}

// squeeze collapses runs of spaces, so table rows compare without their padding.
func squeeze(s string) string {
	for strings.Contains(s, "  ") {
		s = strings.ReplaceAll(s, "  ", " ")
	}
	return s
}

func TestHTTPRateFailures(t *testing.T) {
	// failFrom answers /ping with 503 from its n-th request on (the preflight is the first).
	failFrom := func(n int64) func(http.Handler) http.Handler {
		return func(h http.Handler) http.Handler {
			var seen atomic.Int64
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/ping" && seen.Add(1) >= n {
					http.Error(w, "overloaded", http.StatusServiceUnavailable)
					return
				}
				h.ServeHTTP(w, r)
			})
		}
	}
	for _, tc := range []struct {
		name string
		wrap func(http.Handler) http.Handler
		want string
	}{
		{"a counted request fails", failFrom(1 + 4 + 50), `^HTTP rate: connection [0-3], request [0-9]+: /ping answered 503 "overloaded`},
		{"a warm-up fails", failFrom(3), `^HTTP rate: connection [0-3]: warm-up: /ping answered 503 "overloaded`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, _ := origin(t, tc.wrap)
			res := run(t, Config{URL: url, Bytes: 1000, LatencySamples: -1, RateConnections: 4, RateRequests: 100})
			if res.Pass || !slices.ContainsFunc(res.Failures, regexp.MustCompile(tc.want).MatchString) {
				t.Errorf("failures %q, want one matching %q", res.Failures, tc.want)
			}
			if q := res.HTTPRate; q == nil || q.PerSecond != 0 || q.Requests >= 100 || q.Requests != q.Latency.Count {
				t.Errorf("rate of a failed phase %+v", q)
			}
			var b bytes.Buffer
			res.WriteMarkdown(&b)
			if !strings.Contains(b.String(), "— FAIL") || !strings.Contains(b.String(), "- FAIL: HTTP rate: ") ||
				!regexp.MustCompile(`\| HTTP GET /ping, 4 connections \|[^\n]*\| +— \|\n`).MatchString(b.String()) {
				t.Errorf("markdown does not show the failure:\n%s", b.String())
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"256MiB": 256 << 20, "64M": 64 << 20, "1g": 1 << 30, "1000": 1000, "8 KiB": 8 << 10, "5b": 5, "1024G": 1 << 40} {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "M", "-1", "1.5M", "1025G", "12 MB", "0x10", "1T"} {
		if n, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) accepted as %d", s, n)
		}
	}
}

func TestParseStat(t *testing.T) {
	// comm with spaces and parentheses; utime 1234, stime 56 ticks
	stat := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 3 0 12345 1000000 200 18446744073709551615\n"
	if d, err := ParseStat([]byte(stat)); err != nil || d != 12900*time.Millisecond {
		t.Errorf("ParseStat = %v, %v; want 12.9s", d, err)
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 12a 5 0", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -3 5 0"} {
		if _, err := ParseStat([]byte(bad)); !errors.Is(err, ErrStat) {
			t.Errorf("ParseStat(%q): %v, want ErrStat", bad, err)
		}
	}
}

// TestSelfCPU reads /proc/self/stat after burning CPU and compares with getrusage.
func TestSelfCPU(t *testing.T) {
	before, err := procCPU("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(150 * time.Millisecond)
	x := uint64(1)
	for time.Now().Before(deadline) {
		for range 10000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	after, err := procCPU("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	rusage := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if after-before < 50*time.Millisecond {
		t.Errorf("150ms of spinning added %v of CPU time (x=%d)", after-before, x)
	}
	// /proc counts whole ticks; getrusage is precise: they agree within a few ticks.
	if diff := rusage - after; diff < -30*time.Millisecond || diff > 100*time.Millisecond {
		t.Errorf("/proc/self/stat says %v, getrusage %v", after, rusage)
	}
}

func TestVhostWorkersCounted(t *testing.T) {
	proc := t.TempDir()
	write := func(pid int, comm string, utime, stime int) {
		dir := filepath.Join(proc, fmt.Sprint(pid))
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "stat"), fmt.Appendf(nil, "%d (%s) S 2 0 0 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 1 0 0\n", pid, comm, utime, stime), 0o644)
	}
	write(100, "qemu-system-x86", 500, 100)
	write(200, "vhost-100", 10, 30)
	write(201, "vhost-1000", 999, 999) // another VM's worker
	write(300, "bash", 5, 5)
	os.MkdirAll(filepath.Join(proc, "self"), 0o755)
	before, err := sampleCPU(proc, 100)
	if err != nil {
		t.Fatal(err)
	}
	if before.vmm != 6*time.Second || !reflect.DeepEqual(before.vhost, map[int]time.Duration{200: 400 * time.Millisecond}) {
		t.Fatalf("sample %+v", before)
	}
	write(100, "qemu-system-x86", 550, 130)
	write(200, "vhost-100", 40, 130)
	write(202, "vhost-100", 3, 7) // a worker that appeared meanwhile
	// A worker named after another thread of the VMM (the one that issued VHOST_SET_OWNER).
	os.MkdirAll(filepath.Join(proc, "100", "task", "100"), 0o755)
	os.MkdirAll(filepath.Join(proc, "100", "task", "107"), 0o755)
	write(203, "vhost-107", 5, 5)
	after, err := sampleCPU(proc, 100)
	if err != nil {
		t.Fatal(err)
	}
	vmm, vhost, workers := cpuDelta(before, after)
	if vmm != 800*time.Millisecond || vhost != 1500*time.Millisecond || workers != 3 {
		t.Errorf("delta vmm %v vhost %v workers %d; want 800ms 1.5s 3", vmm, vhost, workers)
	}
	if _, err := sampleCPU(proc, 999); err == nil {
		t.Error("sampleCPU of a missing process succeeded")
	}
}

// TestJSONSchemaStable pins the JSON field names of a result: renaming one breaks consumers.
func TestJSONSchemaStable(t *testing.T) {
	url, echo := origin(t, nil)
	res := run(t, Config{URL: url, Label: "x", Bytes: 1000, LatencySamples: 3, Echo: echo, VMMPID: os.Getpid(), RateConnections: 2})
	var b bytes.Buffer
	if err := report.WriteJSON(&b, res); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	got := keys("", m)
	want := []string{
		"bytes", "echo",
		"failures",
		"guest_to_host", "guest_to_host.bps", "guest_to_host.bytes", "guest_to_host.cpu",
		"guest_to_host.cpu.total_s_per_gib", "guest_to_host.cpu.vhost_workers", "guest_to_host.cpu.vhost_workers_pct",
		"guest_to_host.cpu.vhost_workers_s", "guest_to_host.cpu.vmm_pct", "guest_to_host.cpu.vmm_s", "guest_to_host.cpu.vmm_s_per_gib",
		"guest_to_host.mbit_per_s", "guest_to_host.mib_per_s", "guest_to_host.seconds", "guest_to_host.verified",
		"host_to_guest", "host_to_guest.bps", "host_to_guest.bytes", "host_to_guest.cpu",
		"host_to_guest.cpu.total_s_per_gib", "host_to_guest.cpu.vhost_workers", "host_to_guest.cpu.vhost_workers_pct",
		"host_to_guest.cpu.vhost_workers_s", "host_to_guest.cpu.vmm_pct", "host_to_guest.cpu.vmm_s", "host_to_guest.cpu.vmm_s_per_gib",
		"host_to_guest.mbit_per_s", "host_to_guest.mib_per_s", "host_to_guest.seconds", "host_to_guest.verified",
		"http_latency", "http_latency.count", "http_latency.max_ms", "http_latency.mean_ms", "http_latency.p50_ms",
		"http_latency.p95_ms", "http_latency.p99_ms",
		"http_rate", "http_rate.connections", "http_rate.latency", "http_rate.latency.count", "http_rate.latency.max_ms",
		"http_rate.latency.mean_ms", "http_rate.latency.p50_ms", "http_rate.latency.p95_ms", "http_rate.latency.p99_ms",
		"http_rate.requests", "http_rate.requests_per_s", "http_rate.seconds",
		"label", "pass", "schema", "streams",
		"tcp_latency", "tcp_latency.count", "tcp_latency.max_ms", "tcp_latency.mean_ms", "tcp_latency.p50_ms",
		"tcp_latency.p95_ms", "tcp_latency.p99_ms",
		"url", "vmm_pid",
	}
	if !slices.Equal(got, want) {
		t.Errorf("JSON keys changed:\n got %q\nwant %q", got, want)
	}
	if m["schema"] != "hlsvmm.bench.datapath/v1" || m["pass"] != true {
		t.Errorf("schema %v pass %v", m["schema"], m["pass"])
	}
	back, err := ReadResult(&b)
	if err != nil || !reflect.DeepEqual(back, res) {
		t.Errorf("ReadResult round trip: %v\n%+v\n%+v", err, back, res)
	}
	if _, err := ReadResult(strings.NewReader(`{"schema":"hlsvmm.bench.hls/v1"}`)); err == nil || !strings.Contains(err.Error(), "want \"hlsvmm.bench.datapath/v1\"") {
		t.Errorf("ReadResult of an hls result: %v", err)
	}
	if _, err := ReadResult(strings.NewReader(`{"schema":"hlsvmm.bench.datapath/v1","bogus":1}`)); err == nil {
		t.Error("ReadResult accepted an unknown field")
	}

	// Without a rate phase, http_rate is there and null.
	res = run(t, Config{URL: url, Label: "x", Bytes: 1000, LatencySamples: 3})
	b.Reset()
	if err := report.WriteJSON(&b, res); err != nil {
		t.Fatal(err)
	}
	m = nil
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["http_rate"]; !ok || v != nil {
		t.Errorf("http_rate without a rate phase: %v (present %v), want null", v, ok)
	}
	if back, err := ReadResult(&b); err != nil || back.HTTPRate != nil {
		t.Errorf("ReadResult without a rate: %v, %+v", err, back)
	}
}

func keys(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		out = append(out, prefix+k)
		if sub, ok := v.(map[string]any); ok {
			out = append(out, keys(prefix+k+".", sub)...)
		}
	}
	slices.Sort(out)
	return out
}

// fake makes a result with the given figures (Mbit/s both ways, HTTP p50/p99, VMM s/GiB).
func fake(label string, mbit, p50, p99, cpu float64) *Result {
	tr := Transfer{Verified: true, MbitPerS: mbit, CPU: &CPU{VMMPerGiB: cpu, TotalPerGiB: cpu * 2}}
	return &Result{Schema: Schema, Label: label, GuestToHost: tr, HostToGuest: tr, Pass: true, Failures: []string{},
		HTTPLatency: report.Summary{Count: 10, P50: p50, P99: p99}}
}

func TestCombine(t *testing.T) {
	runs := []*Result{
		fake("hlsvmm vhost=on", 120, 0.5, 2, 0.1),
		fake("hlsvmm vhost=off", 60, 1, 4, 2),
		fake("qemu vhost=on", 100, 0.4, 2, 0.2),
	}
	runs[1].Pass, runs[1].Failures = false, []string{"host→guest: boom"}
	runs[1].HostToGuest.Verified = false
	c, err := Combine(runs, "qemu vhost=on")
	if err != nil {
		t.Fatal(err)
	}
	if c.Pass {
		t.Error("comparison passes with a failed run")
	}
	r := c.Ratios[0]
	if *r.GuestToHost != 1.2 || *r.HTTPP50 != 1.25 || *r.HTTPP99 != 1 || *r.VMMCPUGuestToHost != 0.5 || *r.TotalCPUHostToGuest != 0.5 || r.TCPP50 != nil {
		t.Errorf("ratios of hlsvmm vhost=on: %+v", r)
	}
	if c.Ratios[1].HostToGuest != nil || *c.Ratios[1].GuestToHost != 0.6 || c.Ratios[1].VMMCPUHostToGuest != nil {
		t.Errorf("an unverified transfer has a ratio: %+v", c.Ratios[1])
	}
	var b bytes.Buffer
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"### Performance Comparison\n",
		"| hlsvmm vhost=on          | 120.0 Mbit/s (1.20×) | 120.0 Mbit/s (1.20×) | 0.50 ms (1.25×) | 2.00 ms (1.00×) |       — |       — |  0.10 s/GiB (0.50×) |",
		"| hlsvmm vhost=off FAIL    |  60.0 Mbit/s (0.60×) |                    — | 1.00 ms (2.50×) |",
		"| qemu vhost=on (baseline) |",
		"Ratios (×) against qemu vhost=on",
		"- hlsvmm vhost=off FAIL: host→guest: boom\n",
	} {
		if !strings.Contains(out, strings.TrimSuffix(want, " |")) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "HTTP rate") || c.Ratios[0].HTTPRate != nil {
		t.Errorf("a rate column or ratio without any rate measured:\n%s", out)
	}
	if c, err := Combine(runs, ""); err != nil || c.Baseline != "hlsvmm vhost=on" {
		t.Errorf("default baseline: %v, %v", c, err)
	}
	if _, err := Combine(runs, "qemu vhost=off"); err == nil || !strings.Contains(err.Error(), `"qemu vhost=on"`) {
		t.Errorf("unknown baseline: %v", err)
	}
	if _, err := Combine(append(runs, fake("qemu vhost=on", 1, 1, 1, 1)), ""); err == nil {
		t.Error("duplicate labels accepted")
	}
	if _, err := Combine(nil, ""); err == nil {
		t.Error("no runs accepted")
	}
}

func TestCombineRates(t *testing.T) {
	runs := []*Result{
		fake("qemu", 100, 1, 2, 0.2),
		fake("hlsvmm", 100, 1, 2, 0.2),
		fake("hlsvmm 100 conns", 100, 1, 2, 0.2),
		fake("hlsvmm no rate", 100, 1, 2, 0.2),
		fake("hlsvmm failed rate", 100, 1, 2, 0.2),
	}
	runs[0].HTTPRate = &Rate{Connections: 300, Requests: 6000, PerSecond: 1000}
	runs[1].HTTPRate = &Rate{Connections: 300, Requests: 6000, PerSecond: 1500}
	runs[2].HTTPRate = &Rate{Connections: 100, Requests: 2000, PerSecond: 2000}
	runs[4].HTTPRate = &Rate{Connections: 300, Requests: 12}
	c, err := Combine(runs, "qemu")
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Ratios[1].HTTPRate; r == nil || *r != 1.5 {
		t.Errorf("rate ratio at the same connections: %v, want 1.5", r)
	}
	for _, i := range []int{2, 3, 4} {
		if r := c.Ratios[i].HTTPRate; r != nil {
			t.Errorf("%s: rate ratio %v, want none", runs[i].Label, *r)
		}
	}
	var b bytes.Buffer
	if err := c.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := squeeze(b.String())
	for _, want := range []string{
		"| Mode | guest→host | host→guest | HTTP p50 | HTTP p99 | HTTP rate | TCP p50 |",
		"| qemu (baseline) | 100.0 Mbit/s | 100.0 Mbit/s | 1.00 ms | 2.00 ms | 1000/s @300 | — |",
		"| hlsvmm | 100.0 Mbit/s (1.00×) | 100.0 Mbit/s (1.00×) | 1.00 ms (1.00×) | 2.00 ms (1.00×) | 1500/s @300 (1.50×) | — |",
		"| 2000/s @100 | — |",
		"| hlsvmm no rate | 100.0 Mbit/s (1.00×) | 100.0 Mbit/s (1.00×) | 1.00 ms (1.00×) | 2.00 ms (1.00×) | — | — |",
		"| hlsvmm failed rate | 100.0 Mbit/s (1.00×) | 100.0 Mbit/s (1.00×) | 1.00 ms (1.00×) | 2.00 ms (1.00×) | — | — |",
		"HTTP rate: GET /ping requests per second",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestStatusProgresses(t *testing.T) {
	url, _ := origin(t, nil)
	r, err := New(Config{URL: url, Bytes: 4 << 20, LatencySamples: 20, RateConnections: 4, RateRequests: 400})
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for last := -1.0; ; {
			s := r.Status()
			if s.Fraction < last || s.Fraction > 1 {
				t.Errorf("progress went from %v to %v (%s)", last, s.Fraction, s.Text)
			}
			last = s.Fraction
			seen.Add(1)
			if s.Text == "done" {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-done
	if s := r.Status(); s.Fraction != 1 {
		t.Errorf("final status %+v, want fraction 1", s)
	}
	if n := r.finished.Load(); n != int64(r.phases()) {
		t.Errorf("%d phases finished, %d counted", n, r.phases())
	}
}
