package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/metrics"
)

// Bad --disk/--share input fails with one line before /dev/kvm is needed
// (none here), and a path with options stays whole (no comma splitting).
func TestRunDeviceFlagsBadInput(t *testing.T) {
	dir := t.TempDir()
	kern := writeFile(t, "bzImage", tinyBzImage(0x20f))
	odd := writeFile(t, "odd.img", make([]byte, 1000))
	file := writeFile(t, "file", []byte("x"))
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing disk", []string{"--disk", filepath.Join(dir, "nope") + ",ro"}, 1, "no such file"},
		{"disk is a directory", []string{"--disk", dir + ",ro"}, 1, "is a directory"},
		{"unknown disk option kept whole", []string{"--disk", odd + ",bogus"}, 2, `unknown option "bogus"`},
		{"unaligned disk", []string{"--disk", odd + ",ro"}, 1, "multiple of 512"},
		{"share without tag", []string{"--share", dir}, 2, "PATH:TAG"},
		{"missing share", []string{"--share", filepath.Join(dir, "nope") + ":t,ro"}, 1, "no such file"},
		{"share is a file", []string{"--share", file + ":t,ro"}, 1, "not a directory"},
		{"read-write share", []string{"--share", dir + ":t"}, 1, "add ,ro"},
		{"tag twice", []string{"--share", dir + ":t,ro", "--share", dir + ":t,ro"}, 2, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, _ := runApp(t, append([]string{"run", "--kernel", kern, "--serial", "none"}, tc.args...)...)
			if code != tc.code || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("status %d, error %q; want status %d with %q on one line", code, msg, tc.code, tc.want)
			}
		})
	}
	// The failed runs left nothing open: the images they opened are not locked.
	f, err := os.Open(odd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("%s still locked after the failed runs: %v", odd, err)
	}
}

// Valid devices are opened and checked, then the run fails only at
// /dev/kvm (absent here) or later, never at the device flags.
func TestRunDeviceFlagsAccepted(t *testing.T) {
	dir := t.TempDir()
	kern := writeFile(t, "bzImage", tinyBzImage(0x20f))
	img := writeFile(t, "disk.img", make([]byte, 8192))
	_, msg, _ := runApp(t, "run", "--kernel", kern, "--serial", "none", "--disk", img+",ro", "--disk", img+",ro,serial=x",
		"--share", dir+":ro-store,ro", "--rng=false")
	for _, bad := range []string{"--disk", "--share", "disk ", "share "} {
		if strings.Contains(msg, bad) {
			t.Fatalf("valid device flags refused: %s", msg)
		}
	}
}

// Every --disk reaches the --metrics exporter as blk0, blk1, ... and every
// --share as 9p0, 9p1, ... in flag order, with their device and queue
// counters.
func TestRunDevicesMetrics(t *testing.T) {
	img := writeFile(t, "disk.img", make([]byte, 8192))
	dir := t.TempDir()
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	app := &cli.App{Flags: deviceFlags(), Action: func(c *cli.Context) error {
		g, err := openDevices(c, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer g.Close()
		return g.addMetrics(reg)
	}}
	if err := app.Run([]string{"hlsvmm", "--disk", img + ",ro", "--disk", img + ",ro,serial=second",
		"--share", dir + ":store,ro", "--share", dir + ":other,ro", "--rng=false"}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	// labels lists each series' labels of family name as "k=v,k=v".
	labels := func(name string) map[string]bool {
		out := map[string]bool{}
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				out[strings.Join(ls, ",")] = true
			}
		}
		return out
	}
	if got := labels("hlsvmm_block_read_bytes_total"); len(got) != 2 || !got["device=blk0"] || !got["device=blk1"] {
		t.Fatalf("hlsvmm_block_read_bytes_total series %v, want blk0 and blk1", got)
	}
	if got := labels("hlsvmm_9p_requests_total"); len(got) != 2 || !got["device=9p0,tag=store"] || !got["device=9p1,tag=other"] {
		t.Fatalf("hlsvmm_9p_requests_total series %v, want 9p0 (store) and 9p1 (other)", got)
	}
	if got := labels("hlsvmm_virtio_queue_kicks_total"); len(got) != 4 || !got["device=9p1,queue=all"] {
		t.Fatalf("hlsvmm_virtio_queue_kicks_total series %v, want blk0, blk1, 9p0 and 9p1", got)
	}
	var none *guestDevices
	if err := none.addMetrics(reg); err != nil {
		t.Fatalf("nil devices: %v", err)
	}
}
