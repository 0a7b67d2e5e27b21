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
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(append([]string{"hlsvmm"}, args...))
	if err == nil {
		return 0, out.String()
	}
	t.Logf("error: %v", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, out.String()
	}
	return 1, out.String()
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
		code, out := runHlsvmm(t, "bench", "datapath", "--url", srv.URL, "--bytes", "256K", "--streams", "2",
			"--latency-samples", "5", "--echo", "none", "--vmm-pid", "1", "--label", label, "--progress", "none", "--json")
		if code != 0 {
			t.Fatalf("bench datapath %s: exit %d\n%s", label, code, out)
		}
		var res struct{ Schema, Label string }
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Schema != "hlsvmm.bench.datapath/v1" || res.Label != label {
			t.Fatalf("JSON %+v %v:\n%s", res, err, out)
		}
		f := filepath.Join(dir, strings.ReplaceAll(label, " ", "_")+".json")
		os.WriteFile(f, []byte(out), 0o644)
		files = append(files, f)
	}
	code, out := runHlsvmm(t, append([]string{"bench", "combine", "--baseline", "qemu vhost=on"}, files...)...)
	if code != 0 || !strings.Contains(out, "### Performance Comparison") || !strings.Contains(out, "| qemu vhost=on (baseline) |") ||
		!strings.Contains(out, "×)") {
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
