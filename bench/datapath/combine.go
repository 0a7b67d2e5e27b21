package datapath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hlsvmm/hlsvmm/bench/report"
)

// ComparisonSchema names the JSON layout of Comparison.
const ComparisonSchema = "hlsvmm.bench.datapath.comparison/v1"

// Comparison is several runs side by side with ratios against one of them, the baseline.
type Comparison struct {
	Schema   string    `json:"schema"`
	Baseline string    `json:"baseline"` // label of the baseline run
	Runs     []*Result `json:"runs"`
	Ratios   []Ratios  `json:"ratios"` // one per run, same order; null where a figure is missing
	Pass     bool      `json:"pass"`   // every run passed
}

// Ratios are a run's figures divided by the baseline's. Throughput and request rate: higher is
// better; latency and CPU per GiB: lower is better. Request rates compare only over the same
// number of connections.
type Ratios struct {
	Label               string   `json:"label"`
	GuestToHost         *float64 `json:"guest_to_host_throughput"`
	HostToGuest         *float64 `json:"host_to_guest_throughput"`
	HTTPP50             *float64 `json:"http_p50"`
	HTTPP99             *float64 `json:"http_p99"`
	HTTPRate            *float64 `json:"http_rate"` // requests/s
	TCPP50              *float64 `json:"tcp_p50"`
	TCPP99              *float64 `json:"tcp_p99"`
	VMMCPUGuestToHost   *float64 `json:"vmm_cpu_per_gib_guest_to_host"`
	VMMCPUHostToGuest   *float64 `json:"vmm_cpu_per_gib_host_to_guest"`
	TotalCPUGuestToHost *float64 `json:"total_cpu_per_gib_guest_to_host"`
	TotalCPUHostToGuest *float64 `json:"total_cpu_per_gib_host_to_guest"`
}

// ReadResult decodes one `bench datapath --json` output, checking its schema.
func ReadResult(r io.Reader) (*Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("not a JSON result: %w", err)
	}
	if head.Schema != Schema {
		return nil, fmt.Errorf("schema %q: want %q (the output of bench datapath --json)", head.Schema, Schema)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var res Result
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("decode %s: %w", Schema, err)
	}
	return &res, nil
}

// Combine puts runs side by side with ratios against the run labelled baseline ("" = the first).
// Labels must be unique.
func Combine(runs []*Result, baseline string) (*Comparison, error) {
	if len(runs) == 0 {
		return nil, fmt.Errorf("no results to combine")
	}
	if baseline == "" {
		baseline = runs[0].Label
	}
	var base *Result
	seen := map[string]bool{}
	for _, r := range runs {
		if seen[r.Label] {
			return nil, fmt.Errorf("label %q appears twice: give each run its own --label", r.Label)
		}
		seen[r.Label] = true
		if r.Label == baseline {
			base = r
		}
	}
	if base == nil {
		labels := make([]string, len(runs))
		for i, r := range runs {
			labels[i] = fmt.Sprintf("%q", r.Label)
		}
		return nil, fmt.Errorf("baseline %q is none of the labels %s", baseline, strings.Join(labels, ", "))
	}
	c := &Comparison{Schema: ComparisonSchema, Baseline: baseline, Runs: runs, Pass: true}
	for _, r := range runs {
		c.Pass = c.Pass && r.Pass
		c.Ratios = append(c.Ratios, Ratios{
			Label:               r.Label,
			GuestToHost:         ratio(throughput(r.GuestToHost), throughput(base.GuestToHost)),
			HostToGuest:         ratio(throughput(r.HostToGuest), throughput(base.HostToGuest)),
			HTTPP50:             ratio(latency(&r.HTTPLatency, p50), latency(&base.HTTPLatency, p50)),
			HTTPP99:             ratio(latency(&r.HTTPLatency, p99), latency(&base.HTTPLatency, p99)),
			HTTPRate:            rateRatio(r.HTTPRate, base.HTTPRate),
			TCPP50:              ratio(latency(r.TCPLatency, p50), latency(base.TCPLatency, p50)),
			TCPP99:              ratio(latency(r.TCPLatency, p99), latency(base.TCPLatency, p99)),
			VMMCPUGuestToHost:   ratio(cpu(r.GuestToHost, false), cpu(base.GuestToHost, false)),
			VMMCPUHostToGuest:   ratio(cpu(r.HostToGuest, false), cpu(base.HostToGuest, false)),
			TotalCPUGuestToHost: ratio(cpu(r.GuestToHost, true), cpu(base.GuestToHost, true)),
			TotalCPUHostToGuest: ratio(cpu(r.HostToGuest, true), cpu(base.HostToGuest, true)),
		})
	}
	return c, nil
}

// Figures that may be missing are pointers: nil = not measured (or not verified).
func throughput(t Transfer) *float64 {
	if !t.Verified {
		return nil
	}
	return &t.MbitPerS
}

const (
	p50 = iota
	p99
)

func latency(s *report.Summary, which int) *float64 {
	if s == nil || s.Count == 0 {
		return nil
	}
	v := s.P50
	if which == p99 {
		v = s.P99
	}
	return &v
}

// requestRate is nil when the rate was not measured or a request failed.
func requestRate(q *Rate) *float64 {
	if q == nil || q.PerSecond == 0 {
		return nil
	}
	return &q.PerSecond
}

func rateRatio(q, base *Rate) *float64 {
	if q == nil || base == nil || q.Connections != base.Connections {
		return nil
	}
	return ratio(requestRate(q), requestRate(base))
}

func cpu(t Transfer, total bool) *float64 {
	if t.CPU == nil || !t.Verified {
		return nil
	}
	v := t.CPU.VMMPerGiB
	if total {
		v = t.CPU.TotalPerGiB
	}
	return &v
}

func ratio(v, base *float64) *float64 {
	if v == nil || base == nil || *base == 0 {
		return nil
	}
	r := report.Round(*v / *base, 3)
	return &r
}

// WriteMarkdown renders the comparison like the seed's "Performance Comparison" table.
func (c *Comparison) WriteMarkdown(w io.Writer) error {
	rates := slices.ContainsFunc(c.Runs, func(r *Result) bool { return r.HTTPRate != nil })
	t := &report.Table{Title: "Performance Comparison", Header: []string{"Mode", "guest→host", "host→guest", "HTTP p50", "HTTP p99"}}
	if rates {
		t.Header = append(t.Header, "HTTP rate")
	}
	t.Header = append(t.Header, "TCP p50", "TCP p99", "VMM CPU g→h", "VMM CPU h→g", "+vhost g→h", "+vhost h→g")
	for i, r := range c.Runs {
		q := c.Ratios[i]
		isBase := r.Label == c.Baseline
		cell := func(v, rt *float64, format func(float64) string) string {
			if v == nil {
				return "—"
			}
			s := format(*v)
			if !isBase && rt != nil {
				s += fmt.Sprintf(" (%.2f×)", *rt)
			}
			return s
		}
		mbit := func(v float64) string { return fmt.Sprintf("%.1f Mbit/s", v) }
		perGiB := func(v float64) string { return fmt.Sprintf("%.2f s/GiB", v) }
		mode := r.Label
		if isBase {
			mode += " (baseline)"
		}
		if !r.Pass {
			mode += " FAIL"
		}
		row := []string{mode,
			cell(throughput(r.GuestToHost), q.GuestToHost, mbit),
			cell(throughput(r.HostToGuest), q.HostToGuest, mbit),
			cell(latency(&r.HTTPLatency, p50), q.HTTPP50, report.Ms),
			cell(latency(&r.HTTPLatency, p99), q.HTTPP99, report.Ms),
		}
		if rates {
			perS := func(v float64) string { return fmt.Sprintf("%.0f/s @%d", v, r.HTTPRate.Connections) }
			row = append(row, cell(requestRate(r.HTTPRate), q.HTTPRate, perS))
		}
		t.AddRow(append(row,
			cell(latency(r.TCPLatency, p50), q.TCPP50, report.Ms),
			cell(latency(r.TCPLatency, p99), q.TCPP99, report.Ms),
			cell(cpu(r.GuestToHost, false), q.VMMCPUGuestToHost, perGiB),
			cell(cpu(r.HostToGuest, false), q.VMMCPUHostToGuest, perGiB),
			cell(cpu(r.GuestToHost, true), q.TotalCPUGuestToHost, perGiB),
			cell(cpu(r.HostToGuest, true), q.TotalCPUHostToGuest, perGiB),
		)...)
	}
	var b strings.Builder
	if err := t.WriteMarkdown(&b); err != nil {
		return err
	}
	fmt.Fprintf(&b, "Ratios (×) against %s: throughput higher is better; latency and CPU lower is better.\n", c.Baseline)
	if rates {
		b.WriteString("HTTP rate: GET /ping requests per second @ that many connections at once (higher is better; ratios only at the baseline's count).\n")
	}
	b.WriteString("VMM CPU: the VMM process's utime+stime (all threads) per GiB moved; +vhost adds the vhost-PID kernel workers.\n")
	for _, r := range c.Runs {
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s FAIL: %s\n", r.Label, f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
