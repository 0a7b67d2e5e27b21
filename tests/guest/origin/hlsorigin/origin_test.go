package hlsorigin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeClock is a settable clock for Stream.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func newTestStream(t *testing.T, bitrate int64) (*Stream, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := NewStream(2*time.Second, 10, bitrate, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func TestNewStreamRejectsBadParameters(t *testing.T) {
	now := time.Now
	for _, tc := range []struct {
		dur     time.Duration
		window  int
		bitrate int64
	}{
		{0, 10, 2e6},
		{2 * time.Second, 0, 2e6},
		{2 * time.Second, 10, 0},
		{2 * time.Second, 10, -1},
		{time.Hour, 10, 1e9}, // 450 GB segments
	} {
		if _, err := NewStream(tc.dur, tc.window, tc.bitrate, now); err == nil {
			t.Errorf("NewStream(%v, %d, %d) accepted", tc.dur, tc.window, tc.bitrate)
		}
	}
}

func TestSegmentSize(t *testing.T) {
	for _, tc := range []struct {
		bitrate int64
		want    int64
	}{{2_000_000, 500_000}, {500_000, 125_000}, {8_000_000, 2_000_000}, {1001, 250}} {
		s, _ := newTestStream(t, tc.bitrate)
		if got := s.SegmentSize(); got != tc.want {
			t.Errorf("bitrate %d: segment size %d, want %d", tc.bitrate, got, tc.want)
		}
	}
}

func TestWindowAdvancesWithTheClock(t *testing.T) {
	s, clk := newTestStream(t, 2e6)
	for _, tc := range []struct {
		after       time.Duration
		first, last int64
	}{
		{0, 0, 9},
		{1999 * time.Millisecond, 0, 9},
		{2 * time.Second, 1, 10},
		{21 * time.Second, 10, 19},
		{-time.Second, 0, 9}, // clock stepped back: no negative sequence numbers
	} {
		first, last := s.WindowAt(clk.t.Add(tc.after))
		if first != tc.first || last != tc.last {
			t.Errorf("after %v: window %d..%d, want %d..%d", tc.after, first, last, tc.first, tc.last)
		}
	}
}

func TestPlaylist(t *testing.T) {
	s, clk := newTestStream(t, 2e6)
	got := s.Playlist(clk.t.Add(7 * time.Second))
	var want strings.Builder
	want.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n")
	for seq := 3; seq <= 12; seq++ {
		fmt.Fprintf(&want, "#EXTINF:2.000000,\nseg%05d.ts\n", seq)
	}
	if got != want.String() {
		t.Errorf("playlist:\n%s\nwant:\n%s", got, want.String())
	}
	if strings.Contains(got, "#EXT-X-ENDLIST") {
		t.Error("live playlist has an end list tag")
	}
}

func TestSegmentContentFormula(t *testing.T) {
	data := SegmentContent(42, 500_000)
	if len(data) != 500_000 {
		t.Fatalf("size %d, want 500000", len(data))
	}
	if got, want := string(data[:RecordSize]), "seg=0000000042 rec=0000000000..\n"; got != want {
		t.Errorf("record 0 = %q, want %q", got, want)
	}
	if got, want := string(data[RecordSize*15624:]), "seg=0000000042 rec=0000015624..\n"; got != want {
		t.Errorf("last record = %q, want %q", got, want)
	}
	// a size that is not a multiple of the record size cuts the last record
	if got, want := string(SegmentContent(7, 40)), "seg=0000000007 rec=0000000000..\nseg=0000"; got != want {
		t.Errorf("40 bytes = %q, want %q", got, want)
	}
	if string(SegmentContent(1, 1000)) == string(SegmentContent(2, 1000)) {
		t.Error("segments 1 and 2 have the same content")
	}
}

func TestParseSegmentName(t *testing.T) {
	for name, want := range map[string]int64{"seg00000.ts": 0, "seg00042.ts": 42, "seg123456.ts": 123456} {
		if got, ok := ParseSegmentName(name); !ok || got != want {
			t.Errorf("ParseSegmentName(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	for _, name := range []string{"", "seg.ts", "seg0042.ts", "seg000042.ts", "seg-0001.ts", "seg+0001.ts",
		"seg00001.ts.bak", "xseg00001.ts", "seg99999999999999999999.ts", "seg0000a.ts"} {
		if seq, ok := ParseSegmentName(name); ok {
			t.Errorf("ParseSegmentName(%q) accepted as %d", name, seq)
		}
	}
}

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestOriginHTTP(t *testing.T) {
	s, clk := newTestStream(t, 2e6)
	m := &Metrics{}
	h := NewOriginHandler(s, m)

	if rec := get(t, h, "GET", "/health"); rec.Code != 200 || rec.Body.String() != "OK" {
		t.Errorf("/health: %d %q", rec.Code, rec.Body.String())
	}
	clk.t = clk.t.Add(5 * time.Second) // window 2..11
	rec := get(t, h, "GET", "/stream.m3u8")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "#EXT-X-MEDIA-SEQUENCE:2\n") {
		t.Errorf("/stream.m3u8: %d %q", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/vnd.apple.mpegurl" {
		t.Errorf("playlist content type %q", ct)
	}

	rec = get(t, h, "GET", "/seg00011.ts")
	if rec.Code != 200 || rec.Body.Len() != 500_000 {
		t.Fatalf("/seg00011.ts: %d, %d bytes", rec.Code, rec.Body.Len())
	}
	if string(rec.Body.Bytes()) != string(SegmentContent(11, 500_000)) {
		t.Error("segment 11 content is not the formula's")
	}
	sum := sha256.Sum256(rec.Body.Bytes())
	if got := rec.Header().Get("X-Segment-Sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("X-Segment-Sha256 %q does not match the body", got)
	}

	for _, path := range []string{"/seg00001.ts", "/seg00012.ts", "/seg0011.ts", "/nothing", "/seg00011.ts/x"} {
		if rec := get(t, h, "GET", path); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", path, rec.Code)
		}
	}
	if rec := get(t, h, "POST", "/health"); rec.Code != 405 {
		t.Errorf("POST /health: %d, want 405", rec.Code)
	}
	if rec := get(t, h, "HEAD", "/seg00002.ts"); rec.Code != 200 || rec.Body.Len() != 0 ||
		rec.Header().Get("Content-Length") != "500000" {
		t.Errorf("HEAD /seg00002.ts: %d, %d body bytes, length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
	}

	clk.t = clk.t.Add(2 * time.Second) // window 3..12: segment 2 has left it
	if rec := get(t, h, "GET", "/seg00002.ts"); rec.Code != 404 {
		t.Errorf("/seg00002.ts after it left the window: %d, want 404", rec.Code)
	}

	if got := m.requests[kindSegment][2].Load(); got != 2 {
		t.Errorf("segment 2xx count %d, want 2", got)
	}
	if got := m.requests[kindSegment][4].Load(); got != 3 {
		t.Errorf("segment 4xx count %d, want 3", got)
	}
	if got := m.bytes[kindSegment].Load(); got < 500_000 {
		t.Errorf("segment bytes %d, want at least 500000", got)
	}
}

func TestMetricsOverHTTP(t *testing.T) {
	s, _ := newTestStream(t, 2e6)
	m := &Metrics{}
	origin := httptest.NewUnstartedServer(NewOriginHandler(s, m))
	origin.Config.ConnState = m.ConnState
	origin.Start()
	defer origin.Close()
	metrics := httptest.NewServer(NewMetricsHandler(s, m))
	defer metrics.Close()

	resp, err := http.Get(origin.URL + "/seg00003.ts")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The client can see the last byte before the handler has counted the request: wait for it.
	for deadline := time.Now().Add(5 * time.Second); m.requests[kindSegment][2].Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}

	resp, err = http.Get(metrics.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		"# TYPE hls_origin_http_requests_total counter\n",
		`hls_origin_http_requests_total{handler="segment",code="2xx"} 1` + "\n",
		`hls_origin_http_response_bytes_total{handler="segment"} 500000` + "\n",
		"hls_origin_open_connections 1\n", // the client's kept-alive connection
		"hls_origin_connections_total 1\n",
		"hls_origin_media_sequence 0\n",
		"hls_origin_segment_bytes 500000\n",
		"hls_origin_segment_duration_seconds 2\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, "# ") && len(strings.Fields(line)) != 2 {
			t.Errorf("malformed metrics line %q", line)
		}
	}
}
