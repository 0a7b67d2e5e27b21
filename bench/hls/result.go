package hls

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/report"
)

// Schema names the JSON layout of Result. Fields are only ever added under the same name;
// a renamed or removed field changes the version.
const Schema = "hlsvmm.bench.hls/v1"

// Result is what a load measured. Its JSON form is the `--json` output; durations are seconds
// (_s), latencies milliseconds (_ms), rates bits per second (_bps) unless named otherwise.
type Result struct {
	Schema        string  `json:"schema"`
	URL           string  `json:"url"` // the playlist
	Clients       int     `json:"clients"`
	DurationS     float64 `json:"duration_s"`
	RampS         float64 `json:"ramp_s"`
	TimeoutS      float64 `json:"timeout_s"` // per request, as used
	StartSegments int     `json:"start_segments"`
	Verify        string  `json:"verify"`
	ElapsedS      float64 `json:"elapsed_s"` // first client start to last client end
	Interrupted   bool    `json:"interrupted"`
	Connections   int64   `json:"connections"` // TCP connections opened; = clients when keep-alive held

	Stream          Stream         `json:"stream"`
	Segments        Counts         `json:"segments"`  // verified segments and their bytes
	Playlists       Counts         `json:"playlists"` // playlist fetches with status 200
	SegmentLatency  report.Summary `json:"segment_latency"`
	PlaylistLatency report.Summary `json:"playlist_latency"`
	Throughput      Throughput     `json:"throughput"`
	Errors          Errors         `json:"errors"`
	Behind          Behind         `json:"behind"`
	ErrorExamples   []string       `json:"error_examples"` // the first few distinct failures

	Pass     bool     `json:"pass"`
	Failures []string `json:"failures"` // why Pass is false, one line each
}

// Stream is the stream as the clients saw it.
type Stream struct {
	SegmentDurationS float64 `json:"segment_duration_s"` // the newest #EXTINF at start
	SegmentBytes     int64   `json:"segment_bytes"`      // mean size of verified segments
	BitrateBPS       float64 `json:"bitrate_bps"`        // segment_bytes × 8 / segment_duration_s
}

// Counts is a number of responses and their body bytes.
type Counts struct {
	Fetched int64 `json:"fetched"`
	Bytes   int64 `json:"bytes"`
}

// Throughput compares what the clients needed with what arrived.
type Throughput struct {
	OfferedBPS float64 `json:"offered_bps"` // clients × stream bitrate: the link capacity the load needs
	// MeasuredBPS is the body bytes (segments and playlists) received per second over the
	// window from the end of the ramp to the end of the duration, when all clients are running
	// (whole seconds; the whole run if that window is under a second).
	MeasuredBPS   float64 `json:"measured_bps"`
	MeasuredMiBps float64 `json:"measured_mib_s"`
	WindowS       float64 `json:"window_s"`
	MeanBPS       float64 `json:"mean_bps"`         // all body bytes / elapsed_s, ramp included
	Ratio         float64 `json:"ratio_of_offered"` // measured_bps / offered_bps
	PerClientBPS  float64 `json:"per_client_bps"`   // measured_bps / clients
	// Saturated: some client fell behind or timed out, so the link (or origin) carried less
	// than the load needs; per_client_bps is then about the highest bitrate it sustains.
	Saturated bool `json:"saturated"`
}

// Errors counts failed requests (playlists and segments).
type Errors struct {
	HTTP         int64            `json:"http"`           // responses other than 200
	Transport    int64            `json:"transport"`      // no response, or a body cut off
	Timeouts     int64            `json:"timeouts"`       // over timeout_s from request start to last byte
	Mismatches   int64            `json:"mismatches"`     // 200 but content failed verification (or a bad playlist)
	Aborted      int64            `json:"aborted"`        // cut by an interrupt or the hard stop; not errors
	HTTPByStatus map[string]int64 `json:"http_by_status"` // "404": n
}

// Behind counts players that did not keep up with real time. A segment is late when its fetch
// took longer than its #EXTINF duration (or timed out, when the timeout is at least that long);
// a segment is skipped when it had left the playlist window before the player could fetch it
// (see the package doc).
// A client fell behind if it had at least one late or skipped segment.
type Behind struct {
	Clients         int   `json:"clients"`
	LateSegments    int64 `json:"late_segments"`
	SkippedSegments int64 `json:"skipped_segments"`
}

// Limits gate a run for CI: a run fails if a count exceeds its maximum; negative disables.
type Limits struct {
	MaxErrors     int64 // HTTP + transport errors
	MaxTimeouts   int64
	MaxMismatches int64
	MaxBehind     int64 // clients that fell behind
}

// Gate sets Pass and Failures from l. A run that was interrupted or verified no segment fails.
func (res *Result) Gate(l Limits) {
	f := report.Failures([]report.Limit{
		{Name: "errors", Flag: "--max-errors", Got: res.Errors.HTTP + res.Errors.Transport, Max: l.MaxErrors},
		{Name: "timeouts", Flag: "--max-timeouts", Got: res.Errors.Timeouts, Max: l.MaxTimeouts},
		{Name: "mismatches", Flag: "--max-mismatches", Got: res.Errors.Mismatches, Max: l.MaxMismatches},
		{Name: "clients behind", Flag: "--max-behind", Got: int64(res.Behind.Clients), Max: l.MaxBehind},
	})
	if res.Segments.Fetched == 0 {
		f = append(f, "no segment was fetched and verified")
	}
	if res.Interrupted {
		f = append(f, "interrupted")
	}
	res.Failures, res.Pass = f, len(f) == 0
}

func secs(d time.Duration) float64 { return report.Round(d.Seconds(), 3) }

// result merges the clients' measurements.
func (r *Runner) result(clients []*client, elapsed time.Duration, interrupted bool) *Result {
	l := &r.live
	res := &Result{
		Schema: Schema, URL: r.playlistURL.Redacted(), Clients: r.cfg.Clients,
		DurationS: secs(r.cfg.Duration), RampS: secs(r.cfg.Ramp), TimeoutS: secs(r.timeout),
		StartSegments: r.cfg.StartSegments, Verify: string(r.cfg.Verify),
		ElapsedS: secs(elapsed), Interrupted: interrupted, Connections: l.conns.Load(),
		Segments:  Counts{Fetched: l.segments.Load(), Bytes: l.segmentBytes.Load()},
		Playlists: Counts{Fetched: l.playlists.Load(), Bytes: l.playlistBytes.Load()},
		Errors: Errors{HTTP: l.httpErrors.Load(), Transport: l.transportErrors.Load(), Timeouts: l.timeouts.Load(),
			Mismatches: l.mismatches.Load(), Aborted: l.aborted.Load(), HTTPByStatus: map[string]int64{}},
		Behind: Behind{LateSegments: l.late.Load(), SkippedSegments: l.skipped.Load()},
	}
	var segLat, plLat []time.Duration
	for _, c := range clients {
		segLat = append(segLat, c.segLat...)
		plLat = append(plLat, c.plLat...)
		if c.late > 0 || c.skipped > 0 {
			res.Behind.Clients++
		}
		for code, n := range c.status {
			res.Errors.HTTPByStatus[strconv.Itoa(code)] += n
		}
	}
	res.SegmentLatency = report.Summarize(segLat)
	res.PlaylistLatency = report.Summarize(plLat)

	res.Stream.SegmentDurationS = secs(r.segDur)
	if n := res.Segments.Fetched; n > 0 {
		res.Stream.SegmentBytes = res.Segments.Bytes / n
		res.Stream.BitrateBPS = report.Round(report.BitsPerSecond(res.Stream.SegmentBytes, r.segDur), 0)
	}

	t := &res.Throughput
	t.OfferedBPS = report.Round(float64(r.cfg.Clients)*res.Stream.BitrateBPS, 0)
	t.MeanBPS = report.Round(report.BitsPerSecond(l.bytes.Load(), elapsed), 0)
	lo := int((r.cfg.Ramp + time.Second - 1) / time.Second)
	hi := int(min(r.cfg.Duration, elapsed) / time.Second)
	r.bucketMu.Lock()
	if hi > lo && hi <= len(r.buckets) {
		var sum int64
		for _, b := range r.buckets[lo:hi] {
			sum += b
		}
		t.WindowS = float64(hi - lo)
		t.MeasuredBPS = report.Round(report.BitsPerSecond(sum, time.Duration(hi-lo)*time.Second), 0)
	} else {
		t.WindowS, t.MeasuredBPS = secs(elapsed), t.MeanBPS
	}
	r.bucketMu.Unlock()
	t.MeasuredMiBps = report.Round(report.MiBps(t.MeasuredBPS), 3)
	if t.OfferedBPS > 0 {
		t.Ratio = report.Round(t.MeasuredBPS/t.OfferedBPS, 3)
	}
	t.PerClientBPS = report.Round(t.MeasuredBPS/float64(r.cfg.Clients), 0)
	t.Saturated = res.Behind.Clients > 0 || res.Errors.Timeouts > 0

	r.exMu.Lock()
	res.ErrorExamples = slices.Clone(r.examples)
	r.exMu.Unlock()
	if res.ErrorExamples == nil {
		res.ErrorExamples = []string{}
	}
	res.Failures = []string{}
	return res
}

// WriteMarkdown writes the result as a heading, a latency table, a summary table and, when
// the run failed, its failures.
func (res *Result) WriteMarkdown(w io.Writer) error {
	segMs := res.Stream.SegmentDurationS * 1000
	pct := func(ms float64) string {
		if segMs <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f %%", ms/segMs*100)
	}
	if _, err := fmt.Fprintf(w, "## HLS load: %d clients for %gs against %s\n\n", res.Clients, res.DurationS, res.URL); err != nil {
		return err
	}
	lat := &report.Table{
		Title:  fmt.Sprintf("Segment fetch latency, request start to last byte (%d segments)", res.SegmentLatency.Count),
		Header: []string{"", "p50", "p95", "p99", "max", "segment duration"},
	}
	s := res.SegmentLatency
	lat.AddRow("latency", report.Ms(s.P50), report.Ms(s.P95), report.Ms(s.P99), report.Ms(s.Max), report.Ms(segMs))
	lat.AddRow("of segment duration", pct(s.P50), pct(s.P95), pct(s.P99), pct(s.Max), "100 %")
	if err := lat.WriteMarkdown(w); err != nil {
		return err
	}

	t := res.Throughput
	sum := &report.Table{Title: "Summary", Header: []string{"", "value"}, Left: true}
	sum.AddRow("clients", fmt.Sprintf("%d (ramp %gs, start %d segments behind the live edge, %d connections)",
		res.Clients, res.RampS, res.StartSegments, res.Connections))
	sum.AddRow("stream", fmt.Sprintf("%s segments every %gs = %.2f Mbit/s",
		report.Size(res.Stream.SegmentBytes), res.Stream.SegmentDurationS, report.Mbps(res.Stream.BitrateBPS)))
	sum.AddRow("segments fetched", fmt.Sprintf("%d (%s), verify %s", res.Segments.Fetched, report.Size(res.Segments.Bytes), res.Verify))
	sum.AddRow("playlists fetched", fmt.Sprintf("%d (p50 %s, max %s)", res.Playlists.Fetched,
		report.Ms(res.PlaylistLatency.P50), report.Ms(res.PlaylistLatency.Max)))
	sum.AddRow("offered load", fmt.Sprintf("%d × %.2f Mbit/s = %s", res.Clients, report.Mbps(res.Stream.BitrateBPS), report.Rate(t.OfferedBPS)))
	sum.AddRow("measured throughput", fmt.Sprintf("%s over %gs, %.1f %% of offered", report.Rate(t.MeasuredBPS), t.WindowS, t.Ratio*100))
	if t.Saturated {
		sum.AddRow("link saturated", fmt.Sprintf("clients fell behind or timed out: about %.2f Mbit/s per client is what it carried", report.Mbps(t.PerClientBPS)))
	}
	sum.AddRow("HTTP errors", errCell(res.Errors.HTTP, res.Errors.HTTPByStatus))
	sum.AddRow("transport errors", strconv.FormatInt(res.Errors.Transport, 10))
	sum.AddRow(fmt.Sprintf("timeouts (> %gs)", res.TimeoutS), strconv.FormatInt(res.Errors.Timeouts, 10))
	sum.AddRow("content mismatches", strconv.FormatInt(res.Errors.Mismatches, 10))
	sum.AddRow("clients behind real time", fmt.Sprintf("%d (late segments %d, skipped %d)",
		res.Behind.Clients, res.Behind.LateSegments, res.Behind.SkippedSegments))
	verdict := "PASS"
	if !res.Pass {
		verdict = "FAIL"
	}
	sum.AddRow("result", verdict)
	if err := sum.WriteMarkdown(w); err != nil {
		return err
	}
	for _, f := range res.Failures {
		if _, err := fmt.Fprintf(w, "- FAIL %s\n", f); err != nil {
			return err
		}
	}
	for _, e := range res.ErrorExamples {
		if _, err := fmt.Fprintf(w, "- example error: %s\n", e); err != nil {
			return err
		}
	}
	return nil
}

func errCell(n int64, by map[string]int64) string {
	if n == 0 {
		return "0"
	}
	codes := make([]string, 0, len(by))
	for c := range by {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	s := strconv.FormatInt(n, 10) + " ("
	for i, c := range codes {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s × %d", c, by[c])
	}
	return s + ")"
}
