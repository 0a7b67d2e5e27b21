package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
)

// runHlsvmm runs `hlsvmm ARGS` and returns its exit status (as main would) and stdout.
func runHlsvmm(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, _ := runHlsvmmErr(t, args...)
	return code, out
}

// runHlsvmmErr is runHlsvmm that also returns the error main would print ("" on success).
func runHlsvmmErr(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(append([]string{"hlsvmm"}, args...))
	if err == nil {
		return 0, out.String(), ""
	}
	t.Logf("error: %v", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, out.String(), err.Error()
	}
	return 1, out.String(), err.Error()
}

func TestBenchDatapathAndCombine(t *testing.T) {
	s, err := hlsorigin.NewStream(2*time.Second, 10, 2e6, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hlsorigin.NewOriginHandler(s, &hlsorigin.Metrics{}))
	defer srv.Close()
	dir := t.TempDir()
	files := []string{}
	for _, label := range []string{"qemu vhost=on", "hlsvmm vhost=on"} {
		args := []string{"bench", "datapath", "--url", srv.URL, "--bytes", "256K", "--streams", "2",
			"--latency-samples", "5", "--echo", "none", "--vmm-pid", "1", "--label", label, "--progress", "none", "--json"}
		if label == "hlsvmm vhost=on" { // one result with a rate, one without
			args = append(args, "--rate-connections", "4", "--rate-requests", "40")
		}
		code, out := runHlsvmm(t, args...)
		if code != 0 {
			t.Fatalf("bench datapath %s: exit %d\n%s", label, code, out)
		}
		var res struct {
			Schema, Label string
			HTTPRate      *struct {
				Connections  int     `json:"connections"`
				Requests     int     `json:"requests"`
				RequestsPerS float64 `json:"requests_per_s"`
			} `json:"http_rate"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Schema != "hlsvmm.bench.datapath/v1" || res.Label != label {
			t.Fatalf("JSON %+v %v:\n%s", res, err, out)
		}
		if q := res.HTTPRate; (label == "qemu vhost=on") != (q == nil) || q != nil && (q.Connections != 4 || q.Requests != 40 || q.RequestsPerS <= 0) {
			t.Errorf("%s: http_rate %+v", label, q)
		}
		f := filepath.Join(dir, strings.ReplaceAll(label, " ", "_")+".json")
		os.WriteFile(f, []byte(out), 0o644)
		files = append(files, f)
	}
	code, out := runHlsvmm(t, append([]string{"bench", "combine", "--baseline", "qemu vhost=on"}, files...)...)
	if code != 0 || !strings.Contains(out, "### Performance Comparison") || !strings.Contains(out, "| qemu vhost=on (baseline) |") ||
		!strings.Contains(out, "×)") || !strings.Contains(out, " HTTP rate |") || !strings.Contains(out, "/s @4 |") {
		t.Errorf("combine: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"bench", "combine", "--baseline", "nope", files[0]}, 2},
		{[]string{"bench", "combine"}, 2},
		{[]string{"bench", "combine", filepath.Join(dir, "missing.json")}, 2},
		{[]string{"bench", "datapath", "--bytes", "0"}, 2},
		{[]string{"bench", "datapath", "--bytes", "lots"}, 2},
		{[]string{"bench", "datapath", "--streams", "0"}, 2},
		{[]string{"bench", "datapath", "--vmm-pid", "0"}, 2},
		{[]string{"bench", "datapath", "--url", "http://127.0.0.1:1", "--progress", "none"}, 2}, // nothing listens
	} {
		if code, _ := runHlsvmm(t, tc.args...); code != tc.code {
			t.Errorf("hlsvmm %q: exit %d, want %d", tc.args, code, tc.code)
		}
	}
	// Bad rate flags against a live origin: without their checks, these runs would pass.
	for _, tc := range []struct {
		flags []string
		err   string
	}{
		{[]string{"--rate-connections", "-1"}, "--rate-connections -1: want 1 to 1024, or 0 for no rate phase"},
		{[]string{"--rate-connections", "1025"}, "--rate-connections 1025: want 1 to 1024"},
		{[]string{"--rate-connections", "2", "--rate-requests", "-5"}, "--rate-requests -5: want a number of requests"},
		{[]string{"--rate-requests", "10"}, "--rate-requests 10 without --rate-connections"},
		{[]string{"--rate-connections", "4", "--rate-requests", "3"}, "--rate-requests 3: want at least one per connection (--rate-connections 4)"},
	} {
		args := append([]string{"bench", "datapath", "--url", srv.URL, "--bytes", "1K", "--latency-samples", "2",
			"--echo", "none", "--progress", "none"}, tc.flags...)
		if code, _, err := runHlsvmmErr(t, args...); code != 2 || !strings.HasPrefix(err, tc.err) || strings.Contains(err, "\n") {
			t.Errorf("hlsvmm %q: exit %d, error %q; want 2 and %q", tc.flags, code, err, tc.err)
		}
	}
	// A failed run makes combine exit 1 but still print the table.
	bad := strings.Replace(mustRead(t, files[1]), `"pass": true`, `"pass": false`, 1)
	os.WriteFile(files[1], []byte(bad), 0o644)
	if code, out := runHlsvmm(t, append([]string{"bench", "combine"}, files...)...); code != 1 || !strings.Contains(out, "FAIL") {
		t.Errorf("combine with a failed run: exit %d\n%s", code, out)
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
