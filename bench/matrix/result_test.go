package matrix

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hlsvmm/hlsvmm/bench/datapath"
	"github.com/hlsvmm/hlsvmm/bench/report"
)

func sampleResult() *Result {
	spec := Spec{{"vhost", []string{"on", "off"}}, {"offload", []string{"csum,tso4"}}}
	rows := spec.Rows()
	ok := newRowResult(rows[0])
	ok.BootSeconds, ok.VMMExit = 41.5, "exit status 143"
	ok.Datapath = &datapath.Result{
		Schema: datapath.Schema, Label: ok.Label, Pass: true, Failures: []string{},
		GuestToHost: datapath.Transfer{Bytes: 1 << 30, Verified: true, MbitPerS: 812.345, CPU: &datapath.CPU{VMMPerGiB: 0.5, TotalPerGiB: 1.25}},
		HostToGuest: datapath.Transfer{Bytes: 1 << 30, Verified: true, MbitPerS: 95.04, CPU: &datapath.CPU{VMMPerGiB: 2, TotalPerGiB: 3.333}},
		HTTPLatency: report.Summary{Count: 10, P50: 0.5, P99: 12.25},
		TCPLatency:  &report.Summary{Count: 10, P50: 0.125, P99: 150},
	}
	noboot := newRowResult(rows[1])
	noboot.fail("boot: the VMM ended (exit status 1) before http://10.177.0.10:17080/health answered")
	noboot.VMMExit, noboot.VMMOutput = "exit status 1", []string{"hlsvmm: --vhost on: open /dev/vhost-net: no such file", "x|y"}
	return &Result{Schema: Schema, Knobs: spec.Names(), Rows: []RowResult{ok, noboot}, Pass: false}
}

func TestMarkdown(t *testing.T) {
	res := sampleResult()
	// A third row whose benchmark failed half-way: host→guest verified, guest→host not, no CPU.
	half := newRowResult(Row{Index: 3, Settings: []Setting{{"vhost", "off"}, {"offload", "none"}}})
	half.Datapath = &datapath.Result{
		HostToGuest: datapath.Transfer{Verified: true, MbitPerS: 5},
		GuestToHost: datapath.Transfer{Bytes: 10, ErrorText: "reset"},
		HTTPLatency: report.Summary{Count: 3, P50: 1, P99: 2},
	}
	half.fail("bench: guest→host: reset")
	res.Rows = append(res.Rows, half)
	var b bytes.Buffer
	if err := res.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	want := "### Datapath matrix\n\n" +
		"| #   | vhost |   offload | result |   guest→host |  host→guest | HTTP p50 | HTTP p99 | TCP p50 | TCP p99 | VMM CPU g→h | VMM CPU h→g | +vhost g→h | +vhost h→g |\n" +
		"|-----|------:|----------:|-------:|-------------:|------------:|---------:|---------:|--------:|--------:|------------:|------------:|-----------:|-----------:|\n" +
		"| 1   |    on | csum,tso4 |   PASS | 812.3 Mbit/s | 95.0 Mbit/s |  0.50 ms |  12.2 ms | 0.12 ms |  150 ms |  0.50 s/GiB |  2.00 s/GiB | 1.25 s/GiB | 3.33 s/GiB |\n" +
		"| 2   |   off | csum,tso4 |   FAIL |            — |           — |        — |        — |       — |       — |           — |           — |          — |          — |\n" +
		"| 3   |   off |      none |   FAIL |            — |  5.0 Mbit/s |  1.00 ms |  2.00 ms |       — |       — |           — |           — |          — |          — |\n" +
		"\n" +
		"Throughput: verified bytes over wall time. Latency: HTTP GET /ping and 64-byte TCP echo round trips.\n" +
		"VMM CPU: the VMM process's utime+stime (all threads) per GiB moved; +vhost adds the vhost-PID kernel workers.\n" +
		"\n" +
		"- row 2 (vhost=off offload=csum,tso4) FAIL: boot: the VMM ended (exit status 1) before http://10.177.0.10:17080/health answered\n" +
		"  VMM: exit status 1\n" +
		"  | hlsvmm: --vhost on: open /dev/vhost-net: no such file\n" +
		"  | x|y\n" +
		"\n" +
		"- row 3 (vhost=off offload=none) FAIL: bench: guest→host: reset\n"
	if b.String() != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := report.WriteJSON(&b, sampleResult()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Schema string
		Knobs  []string
		Pass   *bool
		Rows   []struct {
			Index     int
			Knobs     map[string]string
			Label     string
			RunArgs   []string `json:"run_args"`
			Pass      bool
			Failures  []string
			BootS     float64  `json:"boot_s"`
			VMMExit   string   `json:"vmm_exit"`
			VMMOutput []string `json:"vmm_output"`
			Datapath  *struct {
				Schema      string
				GuestToHost struct {
					MbitPerS float64 `json:"mbit_per_s"`
				} `json:"guest_to_host"`
			}
		}
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if got.Schema != "hlsvmm.bench.matrix/v1" || strings.Join(got.Knobs, ",") != "vhost,offload" || got.Pass == nil || *got.Pass || len(got.Rows) != 2 {
		t.Fatalf("JSON head: %+v\n%s", got, b.String())
	}
	r1, r2 := got.Rows[0], got.Rows[1]
	if r1.Index != 1 || r1.Knobs["vhost"] != "on" || r1.Knobs["offload"] != "csum,tso4" || r1.Label != "vhost=on offload=csum,tso4" ||
		strings.Join(r1.RunArgs, " ") != "--vhost=on --offload=csum,tso4" || !r1.Pass || r1.Failures == nil || len(r1.Failures) != 0 ||
		r1.BootS != 41.5 || r1.VMMExit != "exit status 143" || r1.VMMOutput != nil ||
		r1.Datapath == nil || r1.Datapath.Schema != datapath.Schema || r1.Datapath.GuestToHost.MbitPerS != 812.345 {
		t.Errorf("row 1: %+v", r1)
	}
	if r2.Pass || len(r2.Failures) != 1 || r2.Datapath != nil || len(r2.VMMOutput) != 2 || r2.VMMExit != "exit status 1" {
		t.Errorf("row 2: %+v", r2)
	}
	if !strings.Contains(b.String(), `"datapath": null`) || strings.Count(b.String(), `"vmm_output"`) != 1 {
		t.Errorf("a failed row's datapath is not null, or a passed row has vmm_output:\n%s", b.String())
	}
}
