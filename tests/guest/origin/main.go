// Command hls-origin is the test guest's HLS origin: a simulated live stream (2 s segments,
// a 10-segment window advancing in real time, 2 Mbit/s by default) served over HTTP on :17080,
// with Prometheus text metrics on :9100. Standard library only; built static into the guest initrd.
//
//	GET /health       OK
//	GET /stream.m3u8  the live media playlist
//	GET /segNNNNN.ts  a segment in the window (else 404): bitrate*duration/8 bytes, the records
//	                  fmt.Sprintf("seg=%010d rec=%010d..\n", N, r), r = 0, 1, ..., cut to size;
//	                  header X-Segment-Sha256 carries its SHA-256
//	GET /blob?bytes=N N bytes of the blob formula (hlsorigin.BlobFill), SHA-256 in trailer X-Blob-Sha256
//	PUT /sink         consumes the body, answers {"bytes":N,"sha256":"..."}
//	GET /ping         pong
//	GET :9100/metrics requests, response bytes, open connections, media sequence
//	TCP :17090        echo (request/response latency below HTTP)
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
)

func main() {
	listen := flag.String("listen", ":17080", "HTTP address of the origin")
	metricsListen := flag.String("metrics-listen", ":9100", "HTTP address of /metrics")
	echoListen := flag.String("echo-listen", ":17090", "TCP echo address (empty: none)")
	bitrate := flag.Int64("bitrate", 2_000_000, "stream bitrate in bits/s (segment size = bitrate x duration / 8)")
	segDur := flag.Duration("segment-duration", 2*time.Second, "segment duration")
	window := flag.Int("window", 10, "segments in the live playlist")
	flag.Parse()
	if err := run(*listen, *metricsListen, *echoListen, *bitrate, *segDur, *window); err != nil {
		fmt.Fprintln(os.Stderr, "hls-origin:", err)
		os.Exit(1)
	}
}

func run(listen, metricsListen, echoListen string, bitrate int64, segDur time.Duration, window int) error {
	s, err := hlsorigin.NewStream(segDur, window, bitrate, time.Now)
	if err != nil {
		return err
	}
	m := &hlsorigin.Metrics{}
	errc := make(chan error, 3)
	// The echo port listens before the origin, so a listening origin (the guest's READY) means both.
	if echoListen != "" {
		eln, err := net.Listen("tcp", echoListen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", echoListen, err)
		}
		go func() { errc <- fmt.Errorf("echo server: %w", hlsorigin.ServeEcho(eln)) }()
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	mln, err := net.Listen("tcp", metricsListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s: %w", metricsListen, err)
	}
	slog.Info("serving", "origin", listen, "metrics", metricsListen, "echo", echoListen, "bitrate", bitrate,
		"segment_bytes", s.SegmentSize(), "segment_duration", segDur, "window", window)
	origin := &http.Server{Handler: hlsorigin.NewOriginHandler(s, m), ConnState: m.ConnState, ReadHeaderTimeout: 10 * time.Second}
	metrics := &http.Server{Handler: hlsorigin.NewMetricsHandler(s, m), ReadHeaderTimeout: 10 * time.Second}
	go func() { errc <- fmt.Errorf("origin server: %w", origin.Serve(ln)) }()
	go func() { errc <- fmt.Errorf("metrics server: %w", metrics.Serve(mln)) }()
	return <-errc
}
