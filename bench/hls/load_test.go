package hls

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/report"
	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
)

const (
	testSegDur  = 200 * time.Millisecond
	testBitrate = 400_000 // 10,000-byte segments
)

// newOrigin starts the test guest's real origin handler on loopback with a fast time base,
// wrapped by wrap (nil: none).
func newOrigin(t *testing.T, window int, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	s, err := hlsorigin.NewStream(testSegDur, window, testBitrate, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = hlsorigin.NewOriginHandler(s, &hlsorigin.Metrics{})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
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

// segSeq returns the sequence number of a segment request, or -1.
func segSeq(r *http.Request) int64 {
	seq, ok := hlsorigin.ParseSegmentName(strings.TrimPrefix(r.URL.Path, "/"))
	if !ok {
		return -1
	}
	return seq
}

func TestLoadFetchesEverySegmentOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	byConn := map[string][]int64{} // remote address → segments requested, in order
	srv := newOrigin(t, 10, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if seq := segSeq(r); seq >= 0 {
				mu.Lock()
				byConn[r.RemoteAddr] = append(byConn[r.RemoteAddr], seq)
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	const clients = 20
	// A generous timeout and no gate on lateness: on a loaded machine a fetch may take longer
	// than 200 ms, which is a speed figure, not a functional failure.
	res := run(t, Config{URL: srv.URL, Clients: clients, Duration: 10 * testSegDur, Ramp: testSegDur, Timeout: 5 * time.Second})
	res.Gate(Limits{MaxBehind: -1})
	if !res.Pass {
		t.Fatalf("run failed: %v; examples %v", res.Failures, res.ErrorExamples)
	}
	t.Logf("behind %+v, segment latency %+v", res.Behind, res.SegmentLatency)
	e := res.Errors
	if e.HTTP+e.Transport+e.Timeouts+e.Mismatches+e.Aborted != 0 || res.Behind.SkippedSegments != 0 {
		t.Errorf("errors %+v, behind %+v", e, res.Behind)
	}
	// Each client fetched all its segments over one kept-alive connection.
	if len(byConn) != clients || res.Connections < clients {
		t.Errorf("%d connections dialled, %d carried segments; want %d", res.Connections, len(byConn), clients)
	}
	var total int
	for conn, seqs := range byConn {
		// 3 at the live edge, then one every 200 ms for up to 2 s
		if len(seqs) < 3+1 || len(seqs) > 3+11 {
			t.Errorf("%s fetched %d segments: %v", conn, len(seqs), seqs)
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Errorf("%s: segments not consecutive: %v", conn, seqs)
				break
			}
		}
		total += len(seqs)
	}
	if res.Segments.Fetched != int64(total) || res.SegmentLatency.Count != total {
		t.Errorf("segments fetched %d, latencies %d; the origin served %d", res.Segments.Fetched, res.SegmentLatency.Count, total)
	}
	if res.Stream.SegmentBytes != 10_000 || res.Stream.BitrateBPS != testBitrate || res.Stream.SegmentDurationS != 0.2 {
		t.Errorf("stream %+v, want 10000-byte segments, 0.2 s, 400 kbit/s", res.Stream)
	}
	if res.Segments.Bytes != int64(total)*10_000 {
		t.Errorf("segment bytes %d for %d segments", res.Segments.Bytes, total)
	}
	if res.Throughput.OfferedBPS != clients*testBitrate || res.Throughput.MeasuredBPS <= 0 {
		t.Errorf("throughput %+v", res.Throughput)
	}
	l := res.SegmentLatency
	if !(l.P50 > 0 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latency %+v", l)
	}
}

func TestLoadStartsAtTheLiveEdge(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var first []int64
	srv := newOrigin(t, 10, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if seq := segSeq(r); seq >= 0 {
				mu.Lock()
				first = append(first, seq)
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	})
	res := run(t, Config{URL: srv.URL + "/stream.m3u8", Clients: 1, Duration: testSegDur / 2, StartSegments: 1})
	// window 0..9 at start: a player starting at the newest segment fetches 9 first
	if len(first) == 0 || first[0] != 9 || res.Segments.Fetched != int64(len(first)) {
		t.Errorf("segments fetched %v, want to start with 9", first)
	}
}

func TestLoadCountsFailures(t *testing.T) {
	// every wrapper breaks segment requests in one way
	breakSegments := func(f func(w http.ResponseWriter, r *http.Request, h http.Handler, seq int64)) func(http.Handler) http.Handler {
		return func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if seq := segSeq(r); seq >= 0 {
					f(w, r, h, seq)
					return
				}
				h.ServeHTTP(w, r)
			})
		}
	}
	for _, tc := range []struct {
		name  string
		wrap  func(http.Handler) http.Handler
		check func(t *testing.T, res *Result)
		cfg   Config // overrides for the default below
	}{
		{"500s", breakSegments(func(w http.ResponseWriter, r *http.Request, h http.Handler, seq int64) {
			if seq%2 == 0 {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		}), func(t *testing.T, res *Result) {
			if res.Errors.HTTP == 0 || res.Errors.HTTPByStatus["500"] != res.Errors.HTTP || res.Segments.Fetched == 0 {
				t.Errorf("errors %+v, %d segments", res.Errors, res.Segments.Fetched)
			}
		}, Config{}},
		{"truncated content", breakSegments(func(w http.ResponseWriter, r *http.Request, h http.Handler, seq int64) {
			data := hlsorigin.SegmentContent(seq, 10_000)
			w.Header().Set("X-Segment-Sha256", sum(data))
			w.Write(data[:5000]) // consistent framing, half the content
		}), func(t *testing.T, res *Result) {
			if res.Errors.Mismatches == 0 || res.Segments.Fetched != 0 {
				t.Errorf("errors %+v, %d segments verified", res.Errors, res.Segments.Fetched)
			}
		}, Config{}},
		{"wrong segment", breakSegments(func(w http.ResponseWriter, r *http.Request, h http.Handler, seq int64) {
			data := hlsorigin.SegmentContent(seq+1, 10_000)
			w.Header().Set("X-Segment-Sha256", sum(data)) // a consistent header: only the records tell
			w.Write(data)
		}), func(t *testing.T, res *Result) {
			if res.Errors.Mismatches == 0 || res.Segments.Fetched != 0 {
				t.Errorf("errors %+v, %d segments verified", res.Errors, res.Segments.Fetched)
			}
		}, Config{}},
		{"cut off", breakSegments(func(w http.ResponseWriter, r *http.Request, h http.Handler, seq int64) {
			data := hlsorigin.SegmentContent(seq, 10_000)
			w.Header().Set("X-Segment-Sha256", sum(data))
			w.Header().Set("Content-Length", "10000")
			w.Write(data[:5000])
			panic(http.ErrAbortHandler) // the connection drops mid-body
		}), func(t *testing.T, res *Result) {
			if res.Errors.Transport == 0 || res.Segments.Fetched != 0 {
				t.Errorf("errors %+v, %d segments verified", res.Errors, res.Segments.Fetched)
			}
		}, Config{}},
		{"stalls", breakSegments(func(w http.ResponseWriter, r *http.Request, h http.Handler, seq int64) {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		}), func(t *testing.T, res *Result) {
			if res.Errors.Timeouts == 0 || res.Behind.LateSegments == 0 || res.Behind.Clients != 3 || !res.Throughput.Saturated {
				t.Errorf("errors %+v, behind %+v", res.Errors, res.Behind)
			}
		}, Config{Duration: 3 * testSegDur, Timeout: 300 * time.Millisecond}},
		{"slower than real time", breakSegments(func(w http.ResponseWriter, r *http.Request, h http.Handler, seq int64) {
			time.Sleep(testSegDur * 3 / 2)
			h.ServeHTTP(w, r)
		}), func(t *testing.T, res *Result) {
			b := res.Behind
			if b.Clients != 3 || b.LateSegments == 0 || b.SkippedSegments == 0 || res.Errors.Timeouts != 0 ||
				res.Errors.HTTP != res.Errors.HTTPByStatus["404"] {
				t.Errorf("behind %+v, errors %+v", b, res.Errors)
			}
		}, Config{Duration: 10 * testSegDur}}, // long enough for playlists to show what was skipped
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOrigin(t, 4, tc.wrap)
			cfg := Config{URL: srv.URL, Clients: 3, Duration: 5 * testSegDur, Ramp: testSegDur / 2, Timeout: time.Second}
			if tc.cfg.Duration != 0 {
				cfg.Duration = tc.cfg.Duration
			}
			if tc.cfg.Timeout != 0 {
				cfg.Timeout = tc.cfg.Timeout
			}
			res := run(t, cfg)
			tc.check(t, res)
			res.Gate(Limits{MaxBehind: -1})
			if res.Pass || len(res.Failures) == 0 {
				t.Errorf("run with broken segments passed: %+v", res)
			}
			if len(res.ErrorExamples) == 0 && res.Errors.HTTP+res.Errors.Transport+res.Errors.Timeouts+res.Errors.Mismatches > 0 {
				t.Error("no error examples")
			}
		})
	}
}

func TestNewAndProbeErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{URL: "ftp://x"},
		{URL: "http://"},
		{Clients: -1},
		{Duration: time.Second, Ramp: time.Second},
		{Timeout: -1},
		{StartSegments: -2},
		{Verify: "md5"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	serve := func(body string, code int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for name, u := range map[string]string{
		"refused": closed,
		"404":     serve("", 404),
		"vod":     serve("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n", 200),
		"empty":   serve("#EXTM3U\n#EXT-X-TARGETDURATION:2\n", 200),
		"html":    serve("<html></html>", 200),
	} {
		r, err := New(Config{URL: u, Clients: 1, Duration: time.Second, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := r.Run(context.Background()); err == nil {
			t.Errorf("%s: run started: %+v", name, res)
		}
	}
}

func TestInterruptedRunFails(t *testing.T) {
	t.Parallel()
	srv := newOrigin(t, 10, nil)
	r, err := New(Config{URL: srv.URL, Clients: 2, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*testSegDur)
	defer cancel()
	start := time.Now()
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("interrupted run took %v", time.Since(start))
	}
	res.Gate(Limits{})
	if !res.Interrupted || res.Pass || !slices.Contains(res.Failures, "interrupted") {
		t.Errorf("interrupted %v, pass %v, failures %v", res.Interrupted, res.Pass, res.Failures)
	}
}

func TestGate(t *testing.T) {
	res := &Result{Segments: Counts{Fetched: 10}, Errors: Errors{HTTP: 1, Transport: 1, Timeouts: 2, Mismatches: 3}, Behind: Behind{Clients: 4}}
	res.Gate(Limits{MaxErrors: 2, MaxTimeouts: 1, MaxMismatches: -1, MaxBehind: 3})
	want := []string{"timeouts: 2 > 1 (--max-timeouts)", "clients behind: 4 > 3 (--max-behind)"}
	if res.Pass || !slices.Equal(res.Failures, want) {
		t.Errorf("pass %v, failures %q; want %q", res.Pass, res.Failures, want)
	}
	res.Gate(Limits{MaxErrors: 2, MaxTimeouts: 2, MaxMismatches: 3, MaxBehind: -1})
	if !res.Pass || len(res.Failures) != 0 {
		t.Errorf("pass %v, failures %q", res.Pass, res.Failures)
	}
	res = &Result{}
	res.Gate(Limits{})
	if res.Pass || !slices.Equal(res.Failures, []string{"no segment was fetched and verified"}) {
		t.Errorf("empty run: pass %v, failures %q", res.Pass, res.Failures)
	}
}

// jsonKeys lists the keys of a JSON object, nested objects as parent.child.
func jsonKeys(prefix string, m map[string]any, out *[]string) {
	for k, v := range m {
		*out = append(*out, prefix+k)
		if sub, ok := v.(map[string]any); ok && k != "http_by_status" {
			jsonKeys(prefix+k+".", sub, out)
		}
	}
}

func TestJSONSchemaIsStable(t *testing.T) {
	t.Parallel()
	srv := newOrigin(t, 10, nil)
	res := run(t, Config{URL: srv.URL, Clients: 2, Duration: 2 * testSegDur})
	res.Gate(Limits{MaxTimeouts: -1, MaxBehind: -1}) // the default 400 ms timeout on a loaded machine
	var b bytes.Buffer
	if err := report.WriteJSON(&b, res); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	jsonKeys("", m, &keys)
	slices.Sort(keys)
	lat := func(p string) []string {
		return []string{p, p + ".count", p + ".max_ms", p + ".mean_ms", p + ".p50_ms", p + ".p95_ms", p + ".p99_ms"}
	}
	want := []string{
		"behind", "behind.clients", "behind.late_segments", "behind.skipped_segments",
		"clients", "connections", "duration_s", "elapsed_s", "error_examples",
		"errors", "errors.aborted", "errors.http", "errors.http_by_status", "errors.mismatches", "errors.timeouts", "errors.transport",
		"failures", "interrupted", "pass",
	}
	want = append(want, lat("playlist_latency")...)
	want = append(want, "playlists", "playlists.bytes", "playlists.fetched", "ramp_s", "schema")
	want = append(want, lat("segment_latency")...)
	want = append(want, "segments", "segments.bytes", "segments.fetched", "start_segments",
		"stream", "stream.bitrate_bps", "stream.segment_bytes", "stream.segment_duration_s",
		"throughput", "throughput.mean_bps", "throughput.measured_bps", "throughput.measured_mib_s",
		"throughput.offered_bps", "throughput.per_client_bps", "throughput.ratio_of_offered",
		"throughput.saturated", "throughput.window_s", "timeout_s", "url", "verify")
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("JSON keys\n%q\nwant\n%q", keys, want)
	}
	if res.TimeoutS != 0.4 {
		t.Errorf("timeout %v s, want twice the segment duration by default", res.TimeoutS)
	}
	if m["schema"] != Schema || m["clients"] != 2.0 {
		t.Errorf("schema %v pass %v clients %v", m["schema"], m["pass"], m["clients"])
	}
	for _, k := range []string{"failures", "error_examples"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s is %v, want a JSON array (never null)", k, m[k])
		}
	}
	var md bytes.Buffer
	if err := res.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## HLS load: 2 clients", "| latency ", "| offered load ", "2 × 0.40 Mbit/s", "| result "} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}
