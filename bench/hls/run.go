package hls

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/report"
)

// Defaults of Config's zero fields.
const (
	DefaultURL           = "http://127.0.0.1:17080"
	DefaultPlaylistPath  = "/stream.m3u8"
	DefaultClients       = 300
	DefaultDuration      = 30 * time.Second
	DefaultRamp          = 5 * time.Second
	DefaultStartSegments = 3
)

// Config describes a load. Zero fields take the defaults above, except Ramp; Timeout 0 is
// twice the segment duration read from the playlist.
type Config struct {
	URL           string        // the origin (http://HOST:PORT, playlist DefaultPlaylistPath) or a playlist URL ending in .m3u8
	Clients       int           // concurrent players
	Duration      time.Duration // from the first client's start until no new request starts
	Ramp          time.Duration // client i starts at i × Ramp / Clients; shorter than Duration (0: all at once; the command's default is DefaultRamp)
	Timeout       time.Duration // per request, from start to last byte
	StartSegments int           // how far behind the live edge a player starts, in segments (1 = the newest)
	Verify        Verify
	Logger        *slog.Logger // nil: slog.Default()
}

// Runner runs one load; Status may be called from another goroutine while Run runs.
type Runner struct {
	cfg         Config
	playlistURL *url.URL
	log         *slog.Logger

	segDur  time.Duration // from the probe
	timeout time.Duration
	start   atomic.Int64 // unix nanoseconds; 0 before the clients start
	live    counters

	bucketMu sync.Mutex
	buckets  []int64 // body bytes received per second of the run

	exMu     sync.Mutex
	examples []string
}

// counters are the run's totals, updated by every client.
type counters struct {
	active, conns                                              atomic.Int64
	playlists, playlistBytes, segments, segmentBytes, bytes    atomic.Int64
	httpErrors, transportErrors, timeouts, mismatches, aborted atomic.Int64
	late, skipped                                              atomic.Int64
}

// maxExamples is how many distinct error messages a run keeps for its report.
const maxExamples = 5

// New checks cfg and fills its defaults.
func New(cfg Config) (*Runner, error) {
	if cfg.URL == "" {
		cfg.URL = DefaultURL
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http://HOST:PORT or a playlist URL", cfg.URL)
	}
	if !strings.HasSuffix(u.Path, ".m3u8") {
		u.Path = strings.TrimSuffix(u.Path, "/") + DefaultPlaylistPath
	}
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	if cfg.Clients == 0 {
		cfg.Clients = DefaultClients
	}
	set(&cfg.Duration, DefaultDuration)
	if cfg.StartSegments == 0 {
		cfg.StartSegments = DefaultStartSegments
	}
	if cfg.Verify == "" {
		cfg.Verify = VerifyOrigin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.Clients < 1 || cfg.Clients > 100000:
		return nil, fmt.Errorf("clients %d: want 1..100000", cfg.Clients)
	case cfg.Duration < 0:
		return nil, fmt.Errorf("duration %v: want a positive duration", cfg.Duration)
	case cfg.Ramp < 0 || cfg.Ramp >= cfg.Duration:
		return nil, fmt.Errorf("ramp %v: want at least 0 and shorter than the duration %v", cfg.Ramp, cfg.Duration)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("timeout %v: want a positive duration (0: twice the segment duration)", cfg.Timeout)
	case cfg.StartSegments < 1:
		return nil, fmt.Errorf("start segments %d: want at least 1", cfg.StartSegments)
	}
	if _, err := ParseVerify(string(cfg.Verify)); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, playlistURL: u, log: cfg.Logger}, nil
}

// PlaylistURL is the playlist the clients follow.
func (r *Runner) PlaylistURL() string { return r.playlistURL.String() }

// probe fetches the playlist once, to fail fast with one clear error before any client starts
// and to learn the segment duration.
func (r *Runner) probe(ctx context.Context) error {
	timeout := r.cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.playlistURL.String(), nil)
	if err != nil {
		return fmt.Errorf("playlist request: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("fetch the playlist: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch the playlist %s: %s", r.playlistURL.Redacted(), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPlaylistBytes+1))
	if err != nil {
		return fmt.Errorf("read the playlist: %w", err)
	}
	pl, err := ParsePlaylist(body, r.playlistURL)
	if err != nil {
		return fmt.Errorf("playlist %s: %w", r.playlistURL.Redacted(), err)
	}
	if pl.Ended {
		return fmt.Errorf("playlist %s: %w: it has #EXT-X-ENDLIST, not a live stream", r.playlistURL.Redacted(), ErrPlaylist)
	}
	if len(pl.Segments) == 0 {
		return fmt.Errorf("playlist %s: %w: no segments", r.playlistURL.Redacted(), ErrPlaylist)
	}
	r.segDur = pl.Segments[len(pl.Segments)-1].Duration
	r.timeout = r.cfg.Timeout
	if r.timeout == 0 {
		r.timeout = 2 * r.segDur
	}
	return nil
}

// Run probes the playlist, runs the clients and returns what they measured. Cancelling ctx
// stops the load early; the result is then marked Interrupted. Errors are for a load that
// could not start (bad URL, no playlist).
func (r *Runner) Run(ctx context.Context) (*Result, error) {
	if err := r.probe(ctx); err != nil {
		return nil, err
	}
	// Every request starts before end and is bounded by the timeout; the hard stop is a backstop.
	start := time.Now()
	end := start.Add(r.cfg.Duration)
	hard, cancel := context.WithDeadline(ctx, end.Add(r.timeout+time.Second))
	defer cancel()
	r.bucketMu.Lock()
	r.buckets = make([]int64, int((r.cfg.Duration+r.timeout)/time.Second)+3)
	r.bucketMu.Unlock()
	r.start.Store(start.UnixNano())

	clients := make([]*client, r.cfg.Clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := newClient(r, r.timeout)
		clients[i] = c
		at := start.Add(time.Duration(int64(r.cfg.Ramp) * int64(i) / int64(r.cfg.Clients)))
		wg.Go(func() {
			t := time.NewTimer(time.Until(at))
			defer t.Stop()
			select {
			case <-t.C:
			case <-hard.Done():
				return
			}
			r.live.active.Add(1)
			defer r.live.active.Add(-1)
			c.run(hard, end)
		})
	}
	wg.Wait()
	return r.result(clients, time.Since(start), ctx.Err() != nil), nil
}

// addBytes counts n body bytes received now.
func (r *Runner) addBytes(n int) {
	r.live.bytes.Add(int64(n))
	s := r.start.Load()
	if s == 0 {
		return
	}
	i := int(time.Since(time.Unix(0, s)) / time.Second)
	r.bucketMu.Lock()
	if i >= 0 && i < len(r.buckets) {
		r.buckets[i] += int64(n)
	}
	r.bucketMu.Unlock()
}

// example keeps the first few distinct error messages and logs them at debug level.
func (r *Runner) example(err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	r.exMu.Lock()
	defer r.exMu.Unlock()
	if len(r.examples) >= maxExamples {
		return
	}
	for _, e := range r.examples {
		if e == msg {
			return
		}
	}
	r.examples = append(r.examples, msg)
	r.log.Debug("hls bench request failed", "err", msg)
}

// Status is a one-line progress summary for report.Progress.
func (r *Runner) Status() report.Status {
	s := r.start.Load()
	if s == 0 {
		return report.Status{Text: "probing " + r.playlistURL.Redacted()}
	}
	el := time.Since(time.Unix(0, s))
	l := &r.live
	text := fmt.Sprintf("%3.0fs/%.0fs clients %d/%d segments %d %.1f MiB errors %d timeouts %d mismatches %d late %d skipped %d",
		el.Seconds(), r.cfg.Duration.Seconds(), l.active.Load(), r.cfg.Clients, l.segments.Load(),
		float64(l.bytes.Load())/(1<<20), l.httpErrors.Load()+l.transportErrors.Load(), l.timeouts.Load(),
		l.mismatches.Load(), l.late.Load(), l.skipped.Load())
	return report.Status{Fraction: float64(el) / float64(r.cfg.Duration), Text: text}
}
