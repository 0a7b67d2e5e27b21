package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// asMainEnv makes the test binary run main() instead of the tests: bench --matrix re-executes
// its own binary as `hlsvmm run`, which in a test is this binary.
const asMainEnv = "HLSVMM_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBenchMatrixRejects(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "bzImage")
	os.WriteFile(kernel, []byte("not a kernel"), 0o644)
	base := []string{"bench", "--progress", "none", "--kernel", kernel}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--matrix", ""}, "--matrix: empty"},
		{[]string{"--matrix", "vhost"}, "want NAME=V1|V2"},
		{[]string{"--matrix", "vhost=on||off"}, "empty value"},
		{[]string{"--matrix", "vhost=on vhost=off"}, "given twice"},
		{[]string{"--matrix", "--vhost=on|off"}, "without dashes"},
		{[]string{"--matrix", "vcpus=1|2|3|4 mem=1|2|3|4 vhost=on|off|auto|x|y"}, "more than 64"},
		{[]string{"--matrix", "vhots=on|off"}, "knob vhots: hlsvmm run has no --vhots flag"},
		{[]string{"--matrix", "vhost=on", "extra"}, `unexpected argument "extra"`},
		{[]string{"--matrix", "vhost=on", "--bytes", "0"}, "--bytes"},
		{[]string{"--matrix", "vhost=on", "--streams", "0"}, "--streams"},
		{[]string{"--matrix", "vhost=on", "--url", "ftp://x"}, "url"},
		{[]string{"--matrix", "vhost=on", "--vcpus", "0"}, "--vcpus 0"},
		{[]string{"--matrix", "vhost=on", "--ready-timeout", "0s"}, "--ready-timeout"},
		{[]string{"--matrix", "vhost=on", "--stop-timeout", "-1s"}, "--stop-timeout"},
		{[]string{"--matrix", "vhost=on", "--initrd", "/nonexistent/initrd"}, "--initrd"},
		{[]string{"--matrix", "vhost=on", "--progress", "fancy"}, "--progress"},
	} {
		code, out, errOut := runHlsvmmAll(t, append(append([]string(nil), base...), tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%q: exit %d, error %q, stdout %q; want exit 2, an error containing %q, no table", tc.args, code, errOut, out, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--matrix", "vhost=on"}, "needs --kernel"},
		{[]string{"bench", "--matrix", "vhost=on", "--kernel", "/nonexistent/bzImage"}, "--kernel"},
		{[]string{"bench", "--kernel", kernel}, "--kernel without --matrix"},
		{[]string{"bench", "nosuch"}, `no subcommand "nosuch"`},
	} {
		if code, _, errOut := runHlsvmmAll(t, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, error %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	// Without --matrix or a subcommand: the help, which names both.
	if code, out, _ := runHlsvmmAll(t, "bench"); code != 0 || !strings.Contains(out, "--matrix SPEC") || !strings.Contains(out, "datapath") {
		t.Errorf("bench alone: exit %d\n%s", code, out)
	}
}

// TestBenchMatrixRunsRows runs the real thing up to the boot: every row's `hlsvmm run` (this
// binary as main) gets the row's flags and fails without a VM; the rows are reported failed
// with the VMM's output, in order, and the command exits 1.
func TestBenchMatrixRunsRows(t *testing.T) {
	t.Setenv(asMainEnv, "1")
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	os.WriteFile(kernel, []byte("not a kernel"), 0o644)
	// A closed loopback port as the guest: /health never answers, nothing leaves the host.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	logs := filepath.Join(dir, "logs")
	code, out, errOut := runHlsvmmAll(t, "bench", "--matrix", "vcpus=0|1", "--kernel", kernel, "--mem", "512",
		"--run-flag=--net=none", "--url", url, "--ready-timeout", "1m", "--stop-timeout", "5s", "--log-dir", logs,
		"--progress", "none", "--json")
	if code != 1 || !strings.Contains(errOut, "bench --matrix: 2 of 2 rows failed: 1 (vcpus=0), 2 (vcpus=1)") {
		t.Errorf("exit %d, error %q; want 1 and both rows failed", code, errOut)
	}
	var res struct {
		Schema string
		Knobs  []string
		Pass   bool
		Rows   []struct {
			Label     string
			RunArgs   []string `json:"run_args"`
			Pass      bool
			Failures  []string
			VMMExit   string   `json:"vmm_exit"`
			VMMOutput []string `json:"vmm_output"`
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if res.Schema != "hlsvmm.bench.matrix/v1" || res.Pass || len(res.Rows) != 2 || strings.Join(res.Knobs, ",") != "vcpus" {
		t.Fatalf("result %+v", res)
	}
	// Row 1: run refuses --vcpus=0 (exit 2); row 2 gets past it and fails on the kernel (exit 1).
	for i, want := range []struct{ exit, output string }{
		{"exit status 2", "--vcpus 0: want 1 to"},
		{"exit status 1", "--kernel " + kernel},
	} {
		row := res.Rows[i]
		boot := fmt.Sprintf("boot: the VMM ended (%s) before %s/health answered", want.exit, url)
		if row.Pass || len(row.Failures) != 1 || row.Failures[0] != boot || row.VMMExit != want.exit ||
			!strings.Contains(strings.Join(row.VMMOutput, "\n"), want.output) {
			t.Errorf("row %d: %+v; want failure %q, output with %q", i+1, row, boot, want.output)
		}
		log, err := os.ReadFile(filepath.Join(logs, fmt.Sprintf("row-%d.log", i+1)))
		if err != nil || !strings.Contains(string(log), want.output) {
			t.Errorf("row %d's log: %v\n%s", i+1, err, log)
		}
	}
	if got := strings.Join(res.Rows[1].RunArgs, " "); got != "--vcpus=1" {
		t.Errorf("row 2's run args %q", got)
	}
	for _, want := range []string{
		"bench matrix: 2 rows of ",
		" --log-level=info run --kernel=" + kernel + " --mem=512 --net=none\n",
		"bench matrix: row 1/2 vcpus=0: starting --vcpus=0\n",
		"bench matrix: row 2/2 vcpus=1: FAIL: boot: the VMM ended (exit status 1)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// runHlsvmmAll runs `hlsvmm ARGS` and returns its exit status (as main would), stdout, and
// stderr followed by the error main would print.
func runHlsvmmAll(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	app := newApp()
	var out, errOut strings.Builder
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(append([]string{"hlsvmm"}, args...))
	if err == nil {
		return 0, out.String(), errOut.String()
	}
	errOut.WriteString("hlsvmm: " + err.Error() + "\n")
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, out.String(), errOut.String()
	}
	return 1, out.String(), errOut.String()
}
