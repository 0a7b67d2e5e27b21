package datapath

import (
	"fmt"
	"io"
	"strings"

	"github.com/hlsvmm/hlsvmm/bench/report"
)

// Schema names the JSON layout of Result. Fields are only ever added under the same name;
// a renamed or removed field changes the version.
const Schema = "hlsvmm.bench.datapath/v1"

// Result is what one datapath run measured; its JSON form is the `--json` output. Durations are
// seconds (_s), latencies milliseconds (_ms), rates bits per second (_bps) unless named otherwise.
type Result struct {
	Schema      string          `json:"schema"`
	Label       string          `json:"label"`
	URL         string          `json:"url"`
	Echo        string          `json:"echo"`  // HOST:PORT of the TCP echo, "" when not measured
	Bytes       int64           `json:"bytes"` // asked for, per direction
	Streams     int             `json:"streams"`
	VMMPID      int             `json:"vmm_pid"` // 0: CPU not measured
	GuestToHost Transfer        `json:"guest_to_host"`
	HostToGuest Transfer        `json:"host_to_guest"`
	HTTPLatency report.Summary  `json:"http_latency"` // GET /ping on one kept-alive connection
	TCPLatency  *report.Summary `json:"tcp_latency"`  // 64-byte echo round trips; null when not measured
	HTTPRate    *Rate           `json:"http_rate"`    // GET /ping over many connections; null when not measured
	Pass        bool            `json:"pass"`
	Failures    []string        `json:"failures"`
}

// Transfer is one direction's bulk transfer.
type Transfer struct {
	Bytes     int64   `json:"bytes"` // verified bytes moved
	Seconds   float64 `json:"seconds"`
	BPS       float64 `json:"bps"`
	MiBPerS   float64 `json:"mib_per_s"`
	MbitPerS  float64 `json:"mbit_per_s"`
	Verified  bool    `json:"verified"` // every stream complete, content and SHA-256 matched
	CPU       *CPU    `json:"cpu"`      // null without a VMM PID
	ErrorText string  `json:"error,omitempty"`
}

// Rate is the request-rate phase: GET /ping back to back on each of Connections kept-alive
// connections at once.
type Rate struct {
	Connections int            `json:"connections"`
	Requests    int            `json:"requests"` // answered correctly, after one warm-up per connection
	Seconds     float64        `json:"seconds"`  // wall time, first counted request to last answer
	PerSecond   float64        `json:"requests_per_s"`
	Latency     report.Summary `json:"latency"` // of each request, under this concurrency
}

// CPU is the CPU time spent during a transfer.
type CPU struct {
	VMMSeconds      float64 `json:"vmm_s"`           // the VMM process, all its threads
	VhostSeconds    float64 `json:"vhost_workers_s"` // vhost-PID kernel threads outside it
	VhostWorkers    int     `json:"vhost_workers"`
	VMMPerGiB       float64 `json:"vmm_s_per_gib"`
	TotalPerGiB     float64 `json:"total_s_per_gib"` // VMM + vhost workers
	VMMPercent      float64 `json:"vmm_pct"`         // of one CPU, over the transfer
	VhostWorkersPct float64 `json:"vhost_workers_pct"`
}

// WriteMarkdown renders the result as two tables and its failures.
func (r *Result) WriteMarkdown(w io.Writer) error {
	status := "PASS"
	if !r.Pass {
		status = "FAIL"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Datapath: %s — %s\n\n", r.Label, status)
	fmt.Fprintf(&b, "%s, %s each way over %d stream(s)", r.URL, report.Size(r.Bytes), r.Streams)
	if r.VMMPID != 0 {
		fmt.Fprintf(&b, ", VMM PID %d", r.VMMPID)
	}
	b.WriteString(".\n\n")
	t := &report.Table{Header: []string{"", "guest→host", "host→guest"}}
	t.AddRow("throughput", transferRate(r.GuestToHost), transferRate(r.HostToGuest))
	t.AddRow("moved", transferMoved(r.GuestToHost), transferMoved(r.HostToGuest))
	if r.VMMPID != 0 {
		t.AddRow("VMM CPU", cpuCell(r.GuestToHost.CPU, false), cpuCell(r.HostToGuest.CPU, false))
		t.AddRow("+ vhost workers", cpuCell(r.GuestToHost.CPU, true), cpuCell(r.HostToGuest.CPU, true))
	}
	if err := t.WriteMarkdown(&b); err != nil {
		return err
	}
	lt := &report.Table{Header: []string{"latency", "p50", "p99", "max", "samples"}}
	if r.HTTPRate != nil {
		lt.Header = append(lt.Header, "req/s")
	}
	addLatency(lt, "HTTP GET /ping", &r.HTTPLatency)
	if r.TCPLatency != nil {
		addLatency(lt, "TCP echo 64 B", r.TCPLatency)
	}
	if q := r.HTTPRate; q != nil {
		addLatency(lt, fmt.Sprintf("HTTP GET /ping, %d connections", q.Connections), &q.Latency)
		lt.Rows[len(lt.Rows)-1] = append(lt.Rows[len(lt.Rows)-1], rateCell(q))
	}
	if err := lt.WriteMarkdown(&b); err != nil {
		return err
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "- FAIL: %s\n", f)
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func transferRate(t Transfer) string {
	if !t.Verified {
		return "—"
	}
	return report.Rate(t.BPS)
}

func transferMoved(t Transfer) string {
	s := fmt.Sprintf("%s in %.2f s", report.Size(t.Bytes), t.Seconds)
	if t.Verified {
		return s + ", verified"
	}
	return s + ", NOT verified"
}

func cpuCell(c *CPU, total bool) string {
	if c == nil {
		return "—"
	}
	if total {
		return fmt.Sprintf("%.2f s/GiB total (workers %.1f%%, %d)", c.TotalPerGiB, c.VhostWorkersPct, c.VhostWorkers)
	}
	return fmt.Sprintf("%.2f s/GiB (%.1f%%)", c.VMMPerGiB, c.VMMPercent)
}

func addLatency(t *report.Table, name string, s *report.Summary) {
	if s.Count == 0 {
		t.AddRow(name, "—", "—", "—", "0")
		return
	}
	t.AddRow(name, report.Ms(s.P50), report.Ms(s.P99), report.Ms(s.Max), fmt.Sprint(s.Count))
}

// rateCell is the requests per second of a rate phase, "—" when a request failed.
func rateCell(q *Rate) string {
	if q.PerSecond == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f", q.PerSecond)
}
