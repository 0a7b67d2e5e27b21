package hlsorigin

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Handler kinds, the "handler" label of the request metrics.
const (
	kindHealth = iota
	kindPlaylist
	kindSegment
	kindOther
	kindBlob
	kindSink
	kindPing
	numKinds
)

var kindNames = [numKinds]string{"health", "playlist", "segment", "other", "blob", "sink", "ping"}

// Metrics are the origin's counters, rendered in the Prometheus text format by WriteTo.
type Metrics struct {
	requests [numKinds][6]atomic.Int64 // by kind and status class (index status/100)
	bytes    [numKinds]atomic.Int64
	open     atomic.Int64
	accepted atomic.Int64
}

// ConnState counts open connections; use it as http.Server.ConnState.
func (m *Metrics) ConnState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		m.open.Add(1)
		m.accepted.Add(1)
	case http.StateClosed, http.StateHijacked:
		m.open.Add(-1)
	}
}

// WriteMetrics renders m and the stream's state at time t in the Prometheus text format.
func WriteMetrics(w io.Writer, m *Metrics, s *Stream, t time.Time) {
	var b strings.Builder
	b.WriteString("# HELP hls_origin_http_requests_total HTTP requests served, by handler and status class.\n")
	b.WriteString("# TYPE hls_origin_http_requests_total counter\n")
	for k := range numKinds {
		for c := 1; c < 6; c++ {
			fmt.Fprintf(&b, "hls_origin_http_requests_total{handler=%q,code=\"%dxx\"} %d\n", kindNames[k], c, m.requests[k][c].Load())
		}
	}
	b.WriteString("# HELP hls_origin_http_response_bytes_total Response body bytes written, by handler.\n")
	b.WriteString("# TYPE hls_origin_http_response_bytes_total counter\n")
	for k := range numKinds {
		fmt.Fprintf(&b, "hls_origin_http_response_bytes_total{handler=%q} %d\n", kindNames[k], m.bytes[k].Load())
	}
	b.WriteString("# HELP hls_origin_open_connections HTTP connections open now.\n")
	b.WriteString("# TYPE hls_origin_open_connections gauge\n")
	fmt.Fprintf(&b, "hls_origin_open_connections %d\n", m.open.Load())
	b.WriteString("# HELP hls_origin_connections_total HTTP connections accepted.\n")
	b.WriteString("# TYPE hls_origin_connections_total counter\n")
	fmt.Fprintf(&b, "hls_origin_connections_total %d\n", m.accepted.Load())
	first, _ := s.WindowAt(t)
	b.WriteString("# HELP hls_origin_media_sequence EXT-X-MEDIA-SEQUENCE of the live playlist now.\n")
	b.WriteString("# TYPE hls_origin_media_sequence gauge\n")
	fmt.Fprintf(&b, "hls_origin_media_sequence %d\n", first)
	b.WriteString("# HELP hls_origin_segment_bytes Size of every segment.\n")
	b.WriteString("# TYPE hls_origin_segment_bytes gauge\n")
	fmt.Fprintf(&b, "hls_origin_segment_bytes %d\n", s.SegmentSize())
	b.WriteString("# HELP hls_origin_bitrate_bits_per_second Simulated stream bitrate.\n")
	b.WriteString("# TYPE hls_origin_bitrate_bits_per_second gauge\n")
	fmt.Fprintf(&b, "hls_origin_bitrate_bits_per_second %d\n", s.BitsPerSecond)
	b.WriteString("# HELP hls_origin_segment_duration_seconds Duration of every segment.\n")
	b.WriteString("# TYPE hls_origin_segment_duration_seconds gauge\n")
	fmt.Fprintf(&b, "hls_origin_segment_duration_seconds %g\n", s.SegmentDuration.Seconds())
	io.WriteString(w, b.String())
}

// countingWriter records the status and body bytes of a response.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// NewOriginHandler serves /health, /stream.m3u8 and /segNNNNN.ts from s, and the traffic
// endpoints /blob, /sink and /ping (traffic.go), counting into m.
func NewOriginHandler(s *Stream, m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		kind := serveOrigin(cw, r, s)
		if cw.status == 0 {
			cw.status = http.StatusOK
		}
		if c := cw.status / 100; c >= 1 && c <= 5 {
			m.requests[kind][c].Add(1)
		}
		m.bytes[kind].Add(cw.n)
	})
}

func serveOrigin(w http.ResponseWriter, r *http.Request, s *Stream) int {
	switch r.URL.Path {
	case "/blob":
		serveBlob(w, r)
		return kindBlob
	case "/sink":
		serveSink(w, r)
		return kindSink
	case "/ping":
		servePing(w, r)
		return kindPing
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return kindOther
	}
	now := s.Now()
	name := strings.TrimPrefix(r.URL.Path, "/")
	switch {
	case name == "health":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "OK")
		return kindHealth
	case name == "stream.m3u8":
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		w.Header().Set("Cache-Control", "no-cache")
		io.WriteString(w, s.Playlist(now))
		return kindPlaylist
	}
	seq, ok := ParseSegmentName(name)
	if !ok {
		http.NotFound(w, r)
		return kindOther
	}
	seg, ok := s.Segment(seq, now)
	if !ok {
		http.Error(w, "segment outside the live window", http.StatusNotFound)
		return kindSegment
	}
	w.Header().Set("Content-Type", "video/mp2t")
	w.Header().Set("X-Segment-Sha256", seg.SHA256)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(seg.Data))
	return kindSegment
}

// NewMetricsHandler serves the metrics at /metrics.
func NewMetricsHandler(s *Stream, m *Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteMetrics(w, m, s, s.Now())
	})
	return mux
}
