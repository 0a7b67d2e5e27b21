package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/hlsvmm/hlsvmm/metrics"
	"github.com/hlsvmm/hlsvmm/virtio"
	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
	"golang.org/x/sys/unix"
)

// TestRunTuningBadInput: the tuning flags are checked with the other flags
// of `run`, before anything is read or opened: one line naming the flag,
// status 2.
func TestRunTuningBadInput(t *testing.T) {
	good := writeFile(t, "bzImage", tinyBzImage(0x020f))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--queue-size", "100"}, `--queue-size "100": want a power of two from 256 to 1024`},
		{[]string{"--offload", "tso4"}, "--offload tso4: tso4 needs csum"},
		{[]string{"--offload", "csum,ecn"}, "--offload csum,ecn: ecn needs tso4 or tso6"},
		{[]string{"--offload", "tso"}, `--offload tso: unknown offload "tso"`},
		{[]string{"--event-idx", "no"}, `--event-idx "no": want on or off`},
		{[]string{"--indirect-desc", "true"}, `--indirect-desc "true": want on or off`},
		{[]string{"--mrg-rxbuf", "0"}, `--mrg-rxbuf "0": want on or off`},
		{[]string{"--busy-poll", "fast"}, `--busy-poll "fast": want microseconds`},
		{[]string{"--vhost", "off", "--busy-poll", "50"}, "--busy-poll 50: busy-polling is vhost-net's"},
		{[]string{"--tap-sndbuf", "1KiB"}, `--tap-sndbuf "1KiB": want unlimited or a size from 64KiB`},
		{[]string{"--vcpus", "2", "--vcpu-affinity", "0"}, `--vcpu-affinity "0": names 1 CPUs for --vcpus 2`},
		{[]string{"--vcpus", "1", "--vcpu-affinity", "1023"}, `--vcpu-affinity "1023": host CPU 1023 is not one this process may run on`},
		{[]string{"--net", "none", "--offload", "none"}, "--offload: --net none has no network device"},
		{[]string{"--net", "none", "--tap-sndbuf", "1MiB"}, "--tap-sndbuf: --net none has no network device"},
		{[]string{"--net", "tap", "--tap", "x0", "--mrg-rxbuf", "maybe"}, `--mrg-rxbuf "maybe"`},
	} {
		code, msg, _ := runApp(t, append([]string{"run", "--kernel", good}, tc.args...)...)
		if code != 2 || !strings.HasPrefix(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: exit %d, error %q; want 2 and one line starting %q", tc.args, code, msg, tc.want)
		}
	}
}

// TestOpenNetTuning opens the network device as run does on a real TAP in
// a namespace and checks that the knobs reach the device's feature offer,
// its queue sizes and the TAP's send buffer.
func TestOpenNetTuning(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	_, vhostErr := os.Stat("/dev/vhost-net")
	tuned, err := parseTuningArgs(t, 1, vhostOff, "--offload", "none", "--queue-size", "1024", "--tap-sndbuf", "1MiB",
		"--event-idx", "off", "--mrg-rxbuf", "off")
	if err != nil {
		t.Fatal(err)
	}
	var labels map[string]string
	err = inNewNetns(t, func() error {
		// Defaults: today's offer, 256 entries, an unlimited send buffer.
		o := &netOptions{tap: "tune0", vhost: vhostOff, queues: 1}
		nd, err := openNet(o, log)
		if err != nil {
			return err
		}
		defer nd.Close()
		if got, want := nd.dev.Features(), vnet.DeviceFeatures|vnet.RingFeatures; got != want {
			return fmt.Errorf("default knobs: offered %#x, want %#x", got, want)
		}
		if err := checkQueues(nd, vnet.DefaultQueueSize, math.MaxInt32); err != nil {
			return fmt.Errorf("default knobs: %w", err)
		}
		if got := nd.tuning.String(); got != defaultKnobs {
			return fmt.Errorf("default knobs as applied: %s", got)
		}

		o = &netOptions{tap: "tune1", vhost: vhostOff, queues: 1, tuning: tuned}
		if nd, err = openNet(o, log); err != nil {
			return err
		}
		defer nd.Close()
		f := nd.dev.Features()
		if f&vnet.OffloadFeatures != 0 {
			return fmt.Errorf("--offload none: offered %#x with offload bits %#x", f, f&vnet.OffloadFeatures)
		}
		if virtio.HasFeature(f, virtio.FeatureEventIdx) || virtio.HasFeature(f, vnet.FeatureMrgRxbuf) {
			return fmt.Errorf("--event-idx off --mrg-rxbuf off: offered %#x", f)
		}
		if !virtio.HasFeature(f, virtio.FeatureIndirectDesc) || !virtio.HasFeature(f, virtio.FeatureVersion1) {
			return fmt.Errorf("--indirect-desc on: offered %#x", f)
		}
		if err := checkQueues(nd, 1024, 1<<20); err != nil {
			return err
		}
		labels = nd.tuning.Map()

		// --busy-poll with --vhost auto falling back to the userspace
		// datapath: ignored, and reported as off.
		if vhostErr == nil {
			t.Log("this host has /dev/vhost-net: the busy-poll fallback is checked in the test bed")
			return nil
		}
		busy, err := parseTuningArgs(t, 1, vhostAuto, "--busy-poll", "50")
		if err != nil {
			return err
		}
		o = &netOptions{tap: "tune2", vhost: vhostAuto, queues: 1, tuning: busy}
		if nd, err = openNet(o, log); err != nil {
			return err
		}
		defer nd.Close()
		if nd.datapath != metrics.DatapathUserspace || nd.tuning.busyPoll != 0 || busy.busyPoll == 0 {
			return fmt.Errorf("--busy-poll 50 on the userspace fallback: datapath %s, applied %v (asked %v)", nd.datapath, nd.tuning.busyPoll, busy.busyPoll)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// What run exports for net0 (run_metrics.go hands the registry Map).
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AddNetTuning("net0", labels); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fam := range families {
		if fam.GetName() == metrics.NetTuningInfo {
			for _, l := range fam.GetMetric()[0].GetLabel() {
				got = append(got, l.GetName()+"="+l.GetValue())
			}
		}
	}
	want := "busy_poll=0 device=net0 event_idx=off indirect_desc=on mrg_rxbuf=off offload=none queue_size=1024 tap_sndbuf=1MiB vcpu_affinity=none"
	if strings.Join(got, " ") != want {
		t.Errorf("%s labels:\n got %s\nwant %s", metrics.NetTuningInfo, strings.Join(got, " "), want)
	}
}

// checkQueues checks every queue's maximum size and the TAP's send buffer.
func checkQueues(nd *netDevice, size uint16, sndbuf int) error {
	for i, s := range nd.dev.QueueMaxSizes() {
		if s != size {
			return fmt.Errorf("queue %d: maximum size %d, want %d", i, s, size)
		}
	}
	got, err := unix.IoctlGetInt(nd.tap.Queue(0).Fd(), unix.TUNGETSNDBUF)
	if err != nil {
		return fmt.Errorf("TUNGETSNDBUF: %w", err)
	}
	if got != sndbuf {
		return fmt.Errorf("TAP send buffer %d, want %d", got, sndbuf)
	}
	return nil
}
