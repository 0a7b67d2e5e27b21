package main

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// parseTuningArgs parses args with the tuning flags the way `run` does,
// for a VM of vcpus vCPUs and a network device with --vhost vhostMode
// ("" for none).
func parseTuningArgs(t *testing.T, vcpus int, vhostMode string, args ...string) (*tuningOptions, error) {
	t.Helper()
	var got *tuningOptions
	app := &cli.App{
		Name:           "tuning",
		Flags:          tuningFlags(),
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			var err error
			got, err = parseTuning(c, vcpus, vhostMode)
			return err
		},
	}
	err := app.Run(append([]string{"tuning"}, args...))
	return got, err
}

func allowedCPUList(t *testing.T) []int {
	t.Helper()
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(0, &s); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for c := 0; c < len(s)*64; c++ {
		if s.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

const defaultKnobs = "queue-size=256 offload=csum,tso4,tso6,ecn event-idx=on indirect-desc=on mrg-rxbuf=on busy-poll=0 tap-sndbuf=unlimited vcpu-affinity=none"

func TestTuningDefaults(t *testing.T) {
	for _, mode := range []string{vhostAuto, vhostOn, vhostOff, ""} {
		o, err := parseTuningArgs(t, 4, mode)
		if err != nil {
			t.Fatalf("--vhost %q: %v", mode, err)
		}
		if got := o.String(); got != defaultKnobs {
			t.Errorf("defaults:\n got %s\nwant %s", got, defaultKnobs)
		}
		if o.queueSize != vnet.DefaultQueueSize || o.tuning != vnet.DefaultTuning() || o.busyPoll != 0 || o.tapSndBuf != 0 || o.cpuSets() != nil {
			t.Errorf("defaults differ from what hlsvmm did before the knobs: %+v", o)
		}
	}
}

func TestTuningValues(t *testing.T) {
	cpu := allowedCPUList(t)[0]
	o, err := parseTuningArgs(t, 2, vhostOn,
		"--queue-size", "1024", "--offload", "csum,tso4", "--event-idx=off", "--indirect-desc", "off",
		"--mrg-rxbuf", "off", "--busy-poll", "50", "--tap-sndbuf", "1MiB", "--vcpu-affinity", fmt.Sprintf("%d,%d", cpu, cpu))
	if err != nil {
		t.Fatal(err)
	}
	want := &tuningOptions{
		queueSize: 1024,
		tuning:    vnet.Tuning{Offload: vnet.OffloadCsum | vnet.OffloadTSO4},
		busyPoll:  50 * time.Microsecond,
		tapSndBuf: 1 << 20,
		affinity:  []int{cpu, cpu},
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("parsed %+v, want %+v", o, want)
	}
	wantStr := fmt.Sprintf("queue-size=1024 offload=csum,tso4 event-idx=off indirect-desc=off mrg-rxbuf=off busy-poll=50 tap-sndbuf=1MiB vcpu-affinity=%d,%d", cpu, cpu)
	if got := o.String(); got != wantStr {
		t.Errorf("String:\n got %s\nwant %s", got, wantStr)
	}
	m := o.Map()
	if len(m) != 8 || m["offload"] != "csum,tso4" || m["tap-sndbuf"] != "1MiB" || m["busy-poll"] != "50" {
		t.Errorf("Map = %v", m)
	}
	sets := o.cpuSets()
	if len(sets) != 2 || sets[0].Count() != 1 || !sets[0].IsSet(cpu) || !sets[1].IsSet(cpu) {
		t.Errorf("cpuSets = %v", sets)
	}
	// Every value in the stable form is accepted back by its flag.
	var args []string
	for _, k := range o.knobs() {
		args = append(args, "--"+k.name+"="+k.value)
	}
	back, err := parseTuningArgs(t, 2, vhostOn, args...)
	if err != nil || back.String() != o.String() {
		t.Errorf("%v parsed back as %v, %v", args, back, err)
	}
}

func TestTuningAffinityRanges(t *testing.T) {
	cpus := allowedCPUList(t)
	// A range over the first allowed CPU and its allowed successors.
	n := 1
	for n < len(cpus) && cpus[n] == cpus[0]+n {
		n++
	}
	o, err := parseTuningArgs(t, n, vhostAuto, "--vcpu-affinity", fmt.Sprintf("%d-%d", cpus[0], cpus[0]+n-1))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.affinity, cpus[:n]) {
		t.Errorf("affinity %v, want %v", o.affinity, cpus[:n])
	}
	// Lists and ranges mix; the same CPU may serve several vCPUs.
	c := cpus[0]
	o, err = parseTuningArgs(t, 2, vhostAuto, "--vcpu-affinity", fmt.Sprintf("%d, %d-%d", c, c, c))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.affinity, []int{c, c}) {
		t.Errorf("affinity %v, want %v", o.affinity, []int{c, c})
	}
}

func TestTuningBadValues(t *testing.T) {
	allowed := allowedCPUList(t)
	notAllowed := 1023
	for _, c := range allowed {
		if c == notAllowed {
			t.Skip("every CPU number is allowed here")
		}
	}
	cpu := allowed[0]
	for _, tc := range []struct {
		name  string
		vcpus int
		vhost string
		args  []string
		want  string
	}{
		{"queue size not a number", 4, vhostAuto, []string{"--queue-size", "big"}, `--queue-size "big"`},
		{"queue size not a power of two", 4, vhostAuto, []string{"--queue-size", "300"}, `--queue-size "300"`},
		{"queue size too small", 4, vhostAuto, []string{"--queue-size", "128"}, `--queue-size "128"`},
		{"queue size too big", 4, vhostAuto, []string{"--queue-size", "2048"}, `--queue-size "2048"`},
		{"queue size zero", 4, vhostAuto, []string{"--queue-size", "0"}, `--queue-size "0"`},
		{"queue size negative", 4, vhostAuto, []string{"--queue-size=-256"}, `--queue-size "-256"`},
		{"offload unknown", 4, vhostAuto, []string{"--offload", "csum,gso"}, `--offload csum,gso: unknown offload "gso"`},
		{"offload tso without csum", 4, vhostAuto, []string{"--offload", "tso4"}, "--offload tso4: tso4 needs csum"},
		{"offload ufo without csum", 4, vhostAuto, []string{"--offload", "ufo"}, "--offload ufo: ufo needs csum"},
		{"offload ecn without tso", 4, vhostAuto, []string{"--offload", "csum,ecn"}, "--offload csum,ecn: ecn needs tso4 or tso6"},
		{"offload none and more", 4, vhostAuto, []string{"--offload", "none,csum"}, "--offload none,csum"},
		{"offload empty", 4, vhostAuto, []string{"--offload", ""}, "--offload : empty"},
		{"event idx yes", 4, vhostAuto, []string{"--event-idx", "yes"}, `--event-idx "yes": want on or off`},
		{"indirect desc 1", 4, vhostAuto, []string{"--indirect-desc", "1"}, `--indirect-desc "1": want on or off`},
		{"mrg rxbuf ON", 4, vhostAuto, []string{"--mrg-rxbuf", "ON"}, `--mrg-rxbuf "ON": want on or off`},
		{"busy poll negative", 4, vhostOn, []string{"--busy-poll=-1"}, `--busy-poll "-1"`},
		{"busy poll with unit", 4, vhostOn, []string{"--busy-poll", "50us"}, `--busy-poll "50us"`},
		{"busy poll too big", 4, vhostOn, []string{"--busy-poll", "4294967296"}, `--busy-poll "4294967296"`},
		{"busy poll userspace", 4, vhostOff, []string{"--busy-poll", "50"}, "--busy-poll 50: busy-polling is vhost-net's"},
		{"sndbuf junk", 4, vhostAuto, []string{"--tap-sndbuf", "lots"}, `--tap-sndbuf "lots"`},
		{"sndbuf too small", 4, vhostAuto, []string{"--tap-sndbuf", "4KiB"}, `--tap-sndbuf "4KiB"`},
		{"sndbuf zero", 4, vhostAuto, []string{"--tap-sndbuf", "0"}, `--tap-sndbuf "0"`},
		{"sndbuf too big", 4, vhostAuto, []string{"--tap-sndbuf", "2GiB"}, `--tap-sndbuf "2GiB"`},
		{"sndbuf negative", 4, vhostAuto, []string{"--tap-sndbuf=-1M"}, `--tap-sndbuf "-1M"`},
		{"affinity too few", 4, vhostAuto, []string{"--vcpu-affinity", fmt.Sprint(cpu)}, "names 1 CPUs for --vcpus 4"},
		{"affinity too many", 1, vhostAuto, []string{"--vcpu-affinity", fmt.Sprintf("%d,%d", cpu, cpu)}, "names more than 1 CPUs for --vcpus 1"},
		{"affinity huge range", 2, vhostAuto, []string{"--vcpu-affinity", "0-9223372036854775807"}, "names more than 2 CPUs"},
		{"affinity descending", 2, vhostAuto, []string{"--vcpu-affinity", "3-2"}, `"3-2" is not a CPU number or an ascending range`},
		{"affinity junk", 2, vhostAuto, []string{"--vcpu-affinity", "0,x"}, `"x" is not a CPU number`},
		{"affinity negative", 1, vhostAuto, []string{"--vcpu-affinity=-1"}, `"-1" is not a CPU number`},
		{"affinity empty element", 2, vhostAuto, []string{"--vcpu-affinity", "0,,1"}, `"" is not a CPU number`},
		{"affinity empty", 1, vhostAuto, []string{"--vcpu-affinity", ""}, `--vcpu-affinity ""`},
		{"affinity not allowed", 1, vhostAuto, []string{"--vcpu-affinity", fmt.Sprint(notAllowed)}, "host CPU 1023 is not one this process may run on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTuningArgs(t, tc.vcpus, tc.vhost, tc.args...)
			if err == nil {
				t.Fatalf("%v accepted", tc.args)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line mentioning %q", msg, tc.want)
			}
		})
	}
}

func TestTuningNeedsNetDevice(t *testing.T) {
	for _, f := range netTuningFlags() {
		value := map[string]string{"queue-size": "512", "offload": "none", "busy-poll": "10", "tap-sndbuf": "1MiB"}[f]
		if value == "" {
			value = "off"
		}
		_, err := parseTuningArgs(t, 1, "", "--"+f, value)
		if err == nil || err.Error() != "--"+f+": --net none has no network device" {
			t.Errorf("--%s %s without a network device: %v", f, value, err)
		}
	}
	// The vCPU affinity is not a network knob.
	cpu := allowedCPUList(t)[0]
	if _, err := parseTuningArgs(t, 1, "", "--vcpu-affinity", fmt.Sprint(cpu)); err != nil {
		t.Errorf("--vcpu-affinity without a network device: %v", err)
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{65536, "64KiB"}, {1 << 20, "1MiB"}, {3 << 30, "3GiB"}, {1536 << 10, "1536KiB"}, {100000, "100000"}} {
		if got := formatSize(tc.n); got != tc.want {
			t.Errorf("formatSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
