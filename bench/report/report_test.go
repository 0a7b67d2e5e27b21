package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose: Summarize sorts
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	sum := Summarize(s)
	want := Summary{Count: 100, Mean: 50.5, P50: 50, P95: 95, P99: 99, Max: 100}
	if sum != want {
		t.Errorf("Summarize(1..100 ms) = %+v, want %+v", sum, want)
	}
	for _, tc := range []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 99, 7},
		{[]time.Duration{1, 2, 3, 4}, 50, 2},  // rank ceil(2) = 2
		{[]time.Duration{1, 2, 3, 4}, 51, 3},  // rank ceil(2.04) = 3
		{[]time.Duration{1, 2, 3, 4}, 100, 4}, // the maximum
		{[]time.Duration{1, 2, 3, 4}, 0.1, 1}, // never below the first sample
		{[]time.Duration{10, 20, 30, 40, 50, 60, 70, 80, 90, 1000}, 95, 1000},
		{[]time.Duration{10, 20, 30, 40, 50, 60, 70, 80, 90, 1000}, 90, 90},
	} {
		if got := Percentile(tc.samples, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.samples, tc.p, got, tc.want)
		}
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v", got)
	}
}

func TestSummaryJSONNames(t *testing.T) {
	b, err := json.Marshal(Summarize([]time.Duration{1500 * time.Microsecond}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"count":1,"mean_ms":1.5,"p50_ms":1.5,"p95_ms":1.5,"p99_ms":1.5,"max_ms":1.5}`; got != want {
		t.Errorf("JSON %s, want %s", got, want)
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := &Table{Title: "T", Header: []string{"", "p50"}}
	tb.AddRow("a|b", "1 ms")
	tb.AddRow("long name", "12.5 ms", "extra")
	var b bytes.Buffer
	if err := tb.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	want := "### T\n\n" +
		"|           |     p50 |       |\n" +
		"|-----------|--------:|------:|\n" +
		"| a\\|b      |    1 ms |       |\n" +
		"| long name | 12.5 ms | extra |\n\n"
	if b.String() != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	(&Table{Header: []string{"k", "v"}, Rows: [][]string{{"x", "y"}}, Left: true}).WriteMarkdown(&b)
	if want := "| k   | v   |\n|-----|-----|\n| x   | y   |\n\n"; b.String() != want {
		t.Errorf("left-aligned markdown:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestFailures(t *testing.T) {
	got := Failures([]Limit{
		{Name: "errors", Flag: "--max-errors", Got: 3, Max: 0},
		{Name: "timeouts", Got: 2, Max: 2},  // at the limit passes
		{Name: "behind", Got: 100, Max: -1}, // disabled
		{Name: "mismatches", Flag: "--mm", Got: 1, Max: 0},
	})
	want := []string{"errors: 3 > 0 (--max-errors)", "mismatches: 1 > 0 (--mm)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Failures = %q, want %q", got, want)
	}
	if got := Failures(nil); got == nil || len(got) != 0 {
		t.Errorf("Failures(nil) = %#v, want an empty non-nil slice (JSON [])", got)
	}
}

func TestUnits(t *testing.T) {
	bps := BitsPerSecond(10<<20, time.Second)
	if MiBps(bps) != 10 || Mbps(bps) != 83.88608 {
		t.Errorf("10 MiB in 1s = %v MiB/s, %v Mbit/s", MiBps(bps), Mbps(bps))
	}
	if BitsPerSecond(1, 0) != 0 {
		t.Error("rate over no time is not 0")
	}
	if got := Rate(2e6); got != "2.0 Mbit/s (0.24 MiB/s)" {
		t.Errorf("Rate(2e6) = %q", got)
	}
}

// lockedBuffer lets the progress goroutine write while the test reads.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func TestProgress(t *testing.T) {
	for _, tty := range []bool{false, true} {
		out := &syncBuffer{mu: make(chan struct{}, 1)}
		p := &Progress{W: out, TTY: tty, Every: 5 * time.Millisecond}
		p.Start(func() Status { return Status{Fraction: 0.5, Text: "segments 7"} })
		time.Sleep(30 * time.Millisecond)
		p.Stop()
		p.Stop() // idempotent
		s := out.b.String()
		if !tty && !strings.HasPrefix(s, "progress  50% segments 7\n") {
			t.Errorf("line progress %q", s)
		}
		if tty && (!strings.Contains(s, "\r[###############...............]  50% segments 7\x1b[K") || !strings.HasSuffix(s, "\n")) {
			t.Errorf("bar progress %q", s)
		}
	}
	(&Progress{}).Stop() // never started: no-op
}
