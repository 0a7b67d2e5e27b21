package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/tests/guest/origin/hlsorigin"
)

// runBench runs `hlsvmm bench hls ARGS` and returns its exit status (as main would) and stdout.
func runBench(t *testing.T, args ...string) (int, string) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(append([]string{"hlsvmm", "bench", "hls", "--progress", "none"}, args...))
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		t.Logf("error: %v", err)
	}
	return code, out.String()
}

func TestBenchHLSExitStatus(t *testing.T) {
	s, err := hlsorigin.NewStream(200*time.Millisecond, 10, 400_000, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	origin := hlsorigin.NewOriginHandler(s, &hlsorigin.Metrics{})
	good := httptest.NewServer(origin)
	defer good.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".ts") {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		origin.ServeHTTP(w, r)
	}))
	defer bad.Close()
	load := []string{"--clients", "3", "--duration", "600ms", "--ramp", "100ms", "--timeout", "5s", "--max-behind", "-1"}

	code, out := runBench(t, append([]string{"--url", good.URL, "--json"}, load...)...)
	var res struct {
		Schema   string
		Pass     bool
		Segments struct{ Fetched int64 }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if code != 0 || !res.Pass || res.Schema != "hlsvmm.bench.hls/v1" || res.Segments.Fetched == 0 {
		t.Errorf("good origin: exit %d, %+v", code, res)
	}

	code, out = runBench(t, append([]string{"--url", bad.URL}, load...)...)
	if code != 1 || !strings.Contains(out, "| result ") || !strings.Contains(out, "FAIL errors: ") {
		t.Errorf("500s: exit %d, want 1; stdout:\n%s", code, out)
	}
	code, _ = runBench(t, append([]string{"--url", bad.URL, "--max-errors", "-1", "--max-mismatches", "-1"}, load...)...)
	if code != 1 { // nothing verified still fails
		t.Errorf("500s with the errors gate off: exit %d, want 1", code)
	}

	for _, args := range [][]string{
		{"--url", "http://127.0.0.1:1"},
		{"--url", good.URL, "--clients", "0"},
		{"--url", good.URL, "--verify", "md5"},
		{"--url", good.URL, "--progress", "fancy"},
		{"--url", good.URL, "--duration", "1s", "--ramp", "2s"},
		{"--url", good.URL, "extra"},
	} {
		if code, _ := runBench(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
