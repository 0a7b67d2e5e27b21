package matrix

import (
	"fmt"
	"io"
	"strings"

	"github.com/hlsvmm/hlsvmm/bench/datapath"
	"github.com/hlsvmm/hlsvmm/bench/report"
)

// Schema names the JSON layout of Result. Fields are only ever added under the same name;
// a renamed or removed field changes the version.
const Schema = "hlsvmm.bench.matrix/v1"

// Result is a whole matrix; its JSON form is the `--json` output.
type Result struct {
	Schema string      `json:"schema"`
	Knobs  []string    `json:"knobs"` // the knob names, in the spec's order (the table's columns)
	Rows   []RowResult `json:"rows"`  // one per combination, in the spec's order
	Pass   bool        `json:"pass"`  // every row passed
}

// RowResult is one combination: its knob values, how its VM fared and the datapath figures.
type RowResult struct {
	Index       int               `json:"index"` // 1-based
	Knobs       map[string]string `json:"knobs"`
	Label       string            `json:"label"`    // "vhost=on queues=4"
	RunArgs     []string          `json:"run_args"` // the row's flags to hlsvmm run
	Pass        bool              `json:"pass"`
	Failures    []string          `json:"failures"`
	BootSeconds float64           `json:"boot_s"`               // launch to /health answering; 0 if it never did
	VMMExit     string            `json:"vmm_exit"`             // how the VMM process ended, "" if it never started
	VMMOutput   []string          `json:"vmm_output,omitempty"` // its last output lines, on failed rows
	Datapath    *datapath.Result  `json:"datapath"`             // null when nothing was measured
}

func newRowResult(row Row) RowResult {
	return RowResult{Index: row.Index, Knobs: row.Knobs(), Label: row.Label(), RunArgs: row.Args(), Pass: true, Failures: []string{}}
}

func (rr *RowResult) fail(msg string) {
	rr.Pass = false
	rr.Failures = append(rr.Failures, msg)
}

// WriteMarkdown renders one table row per combination, then each failed row's reasons and the
// VMM's last output lines.
func (r *Result) WriteMarkdown(w io.Writer) error {
	t := &report.Table{Title: "Datapath matrix", Header: append(append([]string{"#"}, r.Knobs...),
		"result", "guest→host", "host→guest", "HTTP p50", "HTTP p99", "TCP p50", "TCP p99",
		"VMM CPU g→h", "VMM CPU h→g", "+vhost g→h", "+vhost h→g")}
	for _, row := range r.Rows {
		cells := []string{fmt.Sprint(row.Index)}
		for _, k := range r.Knobs {
			cells = append(cells, row.Knobs[k])
		}
		status := "PASS"
		if !row.Pass {
			status = "FAIL"
		}
		cells = append(cells, status)
		d := row.Datapath
		if d == nil {
			d = &datapath.Result{}
		}
		cells = append(cells,
			rate(d.GuestToHost), rate(d.HostToGuest),
			ms(&d.HTTPLatency, false), ms(&d.HTTPLatency, true),
			ms(d.TCPLatency, false), ms(d.TCPLatency, true),
			perGiB(d.GuestToHost, false), perGiB(d.HostToGuest, false),
			perGiB(d.GuestToHost, true), perGiB(d.HostToGuest, true),
		)
		t.AddRow(cells...)
	}
	var b strings.Builder
	if err := t.WriteMarkdown(&b); err != nil {
		return err
	}
	b.WriteString("Throughput: verified bytes over wall time. Latency: HTTP GET /ping and 64-byte TCP echo round trips.\n")
	b.WriteString("VMM CPU: the VMM process's utime+stime (all threads) per GiB moved; +vhost adds the vhost-PID kernel workers.\n")
	for _, row := range r.Rows {
		if row.Pass {
			continue
		}
		fmt.Fprintf(&b, "\n- row %d (%s) FAIL: %s\n", row.Index, row.Label, strings.Join(row.Failures, "; "))
		if row.VMMExit != "" {
			fmt.Fprintf(&b, "  VMM: %s\n", row.VMMExit)
		}
		for _, l := range row.VMMOutput {
			fmt.Fprintf(&b, "  | %s\n", l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func rate(t datapath.Transfer) string {
	if !t.Verified {
		return "—"
	}
	return fmt.Sprintf("%.1f Mbit/s", t.MbitPerS)
}

func ms(s *report.Summary, p99 bool) string {
	if s == nil || s.Count == 0 {
		return "—"
	}
	if p99 {
		return report.Ms(s.P99)
	}
	return report.Ms(s.P50)
}

func perGiB(t datapath.Transfer, total bool) string {
	if t.CPU == nil || !t.Verified || t.Bytes == 0 {
		return "—"
	}
	v := t.CPU.VMMPerGiB
	if total {
		v = t.CPU.TotalPerGiB
	}
	return fmt.Sprintf("%.2f s/GiB", v)
}
