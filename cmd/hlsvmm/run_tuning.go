package main

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hlsvmm/hlsvmm/bench/datapath"
	"github.com/hlsvmm/hlsvmm/vhost"
	vnet "github.com/hlsvmm/hlsvmm/virtio/net"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// The datapath tuning knobs of `hlsvmm run`. Each trades one resource for
// another; the README's "Tuning knobs" section says which, and so do the
// flags' usage lines. Defaults are what hlsvmm did before they existed.
const (
	minQueueSize      = 256
	maxQueueSize      = 1024
	defaultQueueSize  = vnet.DefaultQueueSize
	minTapSndBuf      = 64 << 10 // one TSO frame
	maxTapSndBuf      = math.MaxInt32
	tapSndBufDefault  = "unlimited"
	vcpuAffinityNone  = "none"
	knobOn, knobOff   = "on", "off"
	busyPollOffString = "0"
)

func tuningFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "queue-size", Value: strconv.Itoa(defaultQueueSize),
			Usage: fmt.Sprintf("virtio-net ring entries per queue, a power of two from %d to %d: more frames in flight and fewer stalls for more guest memory and queueing latency", minQueueSize, maxQueueSize)},
		&cli.StringFlag{Name: "offload", Value: vnet.DefaultOffload.String(),
			Usage: "offloads offered to the guest, a list of csum, tso4, tso6, ecn, ufo, or none: without TSO every MTU-sized packet is its own frame (more exits, more CPU per byte)"},
		&cli.StringFlag{Name: "event-idx", Value: knobOn,
			Usage: "offer VIRTIO_F_EVENT_IDX (on|off): off makes the guest kick and the device interrupt for nearly every frame"},
		&cli.StringFlag{Name: "indirect-desc", Value: knobOn,
			Usage: "offer VIRTIO_F_INDIRECT_DESC (on|off): off makes a frame of n buffers take n ring slots instead of one"},
		&cli.StringFlag{Name: "mrg-rxbuf", Value: knobOn,
			Usage: "offer VIRTIO_NET_F_MRG_RXBUF (on|off): off makes a TSO guest post a 64 KiB receive buffer per ring slot (more memory)"},
		&cli.StringFlag{Name: "busy-poll", Value: busyPollOffString,
			Usage: "vhost-net only: µs the kernel's vhost worker polls a ring and the TAP before sleeping; 0 is off. Burns host CPU for lower latency and fewer wakeups"},
		&cli.StringFlag{Name: "tap-sndbuf", Value: tapSndBufDefault,
			Usage: "TAP send buffer (TUNSETSNDBUF), e.g. 1MiB, or unlimited: a limit caps the host-side bytes in flight from the guest (back-pressure, less buffering) at the cost of throughput"},
		&cli.StringFlag{Name: "vcpu-affinity", Value: vcpuAffinityNone,
			Usage: "pin vCPU i's thread to the i-th host CPU of LIST (e.g. 0,1,2,3 or 2-5; one CPU per vCPU), or none: cache locality for the scheduler's freedom to move it"},
	}
}

// netTuningFlags are the knobs that need a network device.
func netTuningFlags() []string {
	return []string{"queue-size", "offload", "event-idx", "indirect-desc", "mrg-rxbuf", "busy-poll", "tap-sndbuf"}
}

// tuningOptions are the tuning flags, checked before anything is opened.
type tuningOptions struct {
	queueSize int         // ring entries per virtqueue
	tuning    vnet.Tuning // offered offloads and ring features
	busyPoll  time.Duration
	tapSndBuf int   // bytes; 0: unlimited
	affinity  []int // host CPU of each vCPU; nil: not pinned
}

func defaultTuning() *tuningOptions {
	return &tuningOptions{queueSize: defaultQueueSize, tuning: vnet.DefaultTuning()}
}

// parseTuning checks the tuning flags. vhostMode is --vhost ("" when there
// is no network device: then the network knobs may not be set), vcpus the
// number of vCPUs --vcpu-affinity must cover.
func parseTuning(c *cli.Context, vcpus int, vhostMode string) (*tuningOptions, error) {
	if vhostMode == "" {
		for _, f := range netTuningFlags() {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s: --net none has no network device", f)
			}
		}
	}
	t := defaultTuning()
	var err error
	if t.queueSize, err = parseQueueSize(c.String("queue-size")); err != nil {
		return nil, err
	}
	if t.tuning.Offload, err = vnet.ParseOffload(c.String("offload")); err != nil {
		return nil, fmt.Errorf("--offload %s: %w", c.String("offload"), err)
	}
	for _, k := range []struct {
		flag string
		dst  *bool
	}{
		{"event-idx", &t.tuning.EventIdx},
		{"indirect-desc", &t.tuning.IndirectDesc},
		{"mrg-rxbuf", &t.tuning.MrgRxbuf},
	} {
		if *k.dst, err = parseOnOff(k.flag, c.String(k.flag)); err != nil {
			return nil, err
		}
	}
	if t.busyPoll, err = parseBusyPoll(c.String("busy-poll")); err != nil {
		return nil, err
	}
	if t.busyPoll != 0 && vhostMode == vhostOff {
		return nil, fmt.Errorf("--busy-poll %s: busy-polling is vhost-net's; the userspace datapath (--vhost off) has none", c.String("busy-poll"))
	}
	if t.tapSndBuf, err = parseTapSndBuf(c.String("tap-sndbuf")); err != nil {
		return nil, err
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return nil, fmt.Errorf("--vcpu-affinity: read this process's CPU affinity: %w", err)
	}
	if t.affinity, err = parseVCPUAffinity(c.String("vcpu-affinity"), vcpus, allowed); err != nil {
		return nil, err
	}
	return t, nil
}

// parseRunTuning checks the tuning flags of `run` and hands the network
// device's options (nil: --net none) the knobs.
func parseRunTuning(c *cli.Context, vcpus int, netOpts *netOptions) (*tuningOptions, error) {
	vhostMode := ""
	if netOpts != nil {
		vhostMode = netOpts.vhost
	}
	t, err := parseTuning(c, vcpus, vhostMode)
	if err == nil && netOpts != nil {
		netOpts.tuning = t
	}
	return t, err
}

func parseQueueSize(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < minQueueSize || n > maxQueueSize || n&(n-1) != 0 {
		return 0, fmt.Errorf("--queue-size %q: want a power of two from %d to %d (256, 512 or 1024)", s, minQueueSize, maxQueueSize)
	}
	return n, nil
}

func parseOnOff(flag, s string) (bool, error) {
	switch s {
	case knobOn:
		return true, nil
	case knobOff:
		return false, nil
	}
	return false, fmt.Errorf("--%s %q: want on or off", flag, s)
}

func parseBusyPoll(s string) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || time.Duration(n)*time.Microsecond > vhost.MaxBusyPoll {
		return 0, fmt.Errorf("--busy-poll %q: want microseconds from 0 (off) to %d, e.g. 50", s, vhost.MaxBusyPoll/time.Microsecond)
	}
	return time.Duration(n) * time.Microsecond, nil
}

func parseTapSndBuf(s string) (int, error) {
	if s == tapSndBufDefault {
		return 0, nil
	}
	n, err := datapath.ParseSize(s)
	if err != nil || n < minTapSndBuf || n > maxTapSndBuf {
		return 0, fmt.Errorf("--tap-sndbuf %q: want %s or a size from 64KiB to %d bytes (2 GiB - 1), e.g. 1MiB", s, tapSndBufDefault, maxTapSndBuf)
	}
	return int(n), nil
}

// parseVCPUAffinity parses a CPU list ("0,1,2,3", "2-5", "0,4-6") into
// the host CPU of each vCPU: vCPU i runs on the i-th CPU listed, so the
// list names exactly one CPU per vCPU (a CPU may repeat: those vCPUs share
// it). Every CPU must be one this process may run on.
func parseVCPUAffinity(s string, vcpus int, allowed unix.CPUSet) ([]int, error) {
	if s == vcpuAffinityNone {
		return nil, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("--vcpu-affinity %q: %s", s, why)
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		first, err1 := strconv.Atoi(lo)
		last, err2 := first, error(nil)
		if isRange {
			last, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || first < 0 || last < first {
			return nil, bad(fmt.Sprintf("%q is not a CPU number or an ascending range like 2-5; want a list like 0,1,2,3 or 2-5, or none", part))
		}
		if last-first >= vcpus-len(cpus) { // checked before expanding: a range may be huge
			return nil, bad(fmt.Sprintf("names more than %d CPUs for --vcpus %d: give one host CPU per vCPU", vcpus, vcpus))
		}
		for cpu := first; cpu <= last; cpu++ {
			cpus = append(cpus, cpu)
		}
	}
	if len(cpus) != vcpus {
		return nil, bad(fmt.Sprintf("names %d CPUs for --vcpus %d: give one host CPU per vCPU", len(cpus), vcpus))
	}
	for _, cpu := range cpus {
		if cpu >= len(allowed)*64 || !allowed.IsSet(cpu) {
			return nil, bad(fmt.Sprintf("host CPU %d is not one this process may run on (%d usable, see taskset -p %d)", cpu, runtime.NumCPU(), unix.Getpid()))
		}
	}
	return cpus, nil
}

// cpuSets turns the affinity into vmm's one CPU set per vCPU.
func (t *tuningOptions) cpuSets() []unix.CPUSet {
	if t == nil || t.affinity == nil {
		return nil
	}
	sets := make([]unix.CPUSet, len(t.affinity))
	for i, cpu := range t.affinity {
		sets[i].Set(cpu)
	}
	return sets
}

// knob is one tuning flag and its value, as a flag would take it.
type knob struct{ name, value string }

// knobs lists every tuning flag with its value, in flag order, each value
// in a form the flag accepts back.
func (t *tuningOptions) knobs() []knob {
	onOff := func(b bool) string {
		if b {
			return knobOn
		}
		return knobOff
	}
	sndbuf := tapSndBufDefault
	if t.tapSndBuf != 0 {
		sndbuf = formatSize(t.tapSndBuf)
	}
	affinity := vcpuAffinityNone
	if t.affinity != nil {
		s := make([]string, len(t.affinity))
		for i, cpu := range t.affinity {
			s[i] = strconv.Itoa(cpu)
		}
		affinity = strings.Join(s, ",")
	}
	return []knob{
		{"queue-size", strconv.Itoa(t.queueSize)},
		{"offload", t.tuning.Offload.String()},
		{"event-idx", onOff(t.tuning.EventIdx)},
		{"indirect-desc", onOff(t.tuning.IndirectDesc)},
		{"mrg-rxbuf", onOff(t.tuning.MrgRxbuf)},
		{"busy-poll", strconv.FormatInt(int64(t.busyPoll/time.Microsecond), 10)},
		{"tap-sndbuf", sndbuf},
		{"vcpu-affinity", affinity},
	}
}

// String is the knobs as "queue-size=256 offload=csum,tso4,tso6,ecn ...":
// the stable form `hlsvmm run` logs and `hlsvmm bench` prints, the same
// NAME=VALUE form as a bench matrix row.
func (t *tuningOptions) String() string {
	ks := t.knobs()
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = k.name + "=" + k.value
	}
	return strings.Join(parts, " ")
}

// Map is the knobs by flag name, for JSON.
func (t *tuningOptions) Map() map[string]string {
	m := make(map[string]string)
	for _, k := range t.knobs() {
		m[k.name] = k.value
	}
	return m
}

// formatSize writes n bytes with the largest binary unit that divides it
// exactly, in a form datapath.ParseSize reads back.
func formatSize(n int) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.Itoa(n>>u.shift) + u.suffix
		}
	}
	return strconv.Itoa(n)
}
