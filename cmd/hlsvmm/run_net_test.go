package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netOptionsOf parses args (network flags and --vcpus) as run would.
func netOptionsOf(t *testing.T, args ...string) (*netOptions, error) {
	t.Helper()
	var o *netOptions
	app := &cli.App{
		Flags: append(netFlags(), &cli.IntFlag{Name: "vcpus", Value: defaultVCPUs}),
		Action: func(c *cli.Context) error {
			var err error
			o, err = netOptionsFor(c, "tap0")
			return err
		},
	}
	err := app.Run(append([]string{"hlsvmm"}, args...))
	return o, err
}

func TestQueuesFlag(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		queues int
		set    bool
	}{
		{nil, min(defaultVCPUs, maxQueues), false},
		{[]string{"--vcpus", "1"}, 1, false},
		{[]string{"--vcpus", "3"}, 3, false},
		{[]string{"--vcpus", "64"}, 16, false},
		{[]string{"--vcpus", "64", "--queues", "2"}, 2, true},
		{[]string{"--queues", "1"}, 1, true},
		{[]string{"--vcpus", "1", "--queues", "16"}, 16, true},
	} {
		o, err := netOptionsOf(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if o.queues != tc.queues || o.queuesSet != tc.set {
			t.Errorf("%v: queues %d (set %v), want %d (set %v)", tc.args, o.queues, o.queuesSet, tc.queues, tc.set)
		}
	}
	for _, bad := range []string{"0", "17", "-1"} {
		_, err := netOptionsOf(t, "--queues", bad)
		if want := "--queues " + bad + ": want 1 to 16"; err == nil || err.Error() != want {
			t.Errorf("--queues %s: %v, want %q", bad, err, want)
		}
	}
}

// TestRunQueuesBadInput: --queues is checked with the other network flags,
// before anything is opened: one line, status 2.
func TestRunQueuesBadInput(t *testing.T) {
	good := writeFile(t, "bzImage", tinyBzImage(0x020f))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--net", "tap", "--tap", "x0", "--queues", "0"}, "--queues 0: want 1 to 16"},
		{[]string{"--net", "bridge", "--queues", "17"}, "--queues 17: want 1 to 16"},
		{[]string{"--net", "none", "--queues", "2"}, "--queues: --net none has no network device"},
	} {
		code, msg, _ := runApp(t, append([]string{"run", "--kernel", good}, tc.args...)...)
		if code != 2 || msg != tc.want {
			t.Errorf("%v: exit %d, error %q; want 2 and %q", tc.args, code, msg, tc.want)
		}
	}
}

// inNewNetns runs f on a thread of its own in a fresh network namespace
// (the thread is never unlocked: it dies with the namespace). Without the
// privilege for that the test skips, or fails under CI=true.
func inNewNetns(t *testing.T, f func() error) error {
	t.Helper()
	type result struct{ setup, err error }
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{setup: fmt.Errorf("unshare network namespace: %w", err)}
			return
		}
		if _, err := os.Stat("/dev/net/tun"); err != nil {
			ch <- result{setup: err}
			return
		}
		ch <- result{err: f()}
	}()
	r := <-ch
	if r.setup != nil {
		msg := fmt.Sprintf("%v: run as root on a host with /dev/net/tun (sudo go test ./cmd/hlsvmm/)", r.setup)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return r.err
}

// tapQueues reads a TAP's attached and detached queue counts.
func tapQueues(name string) (attached, detached int, err error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, 0, err
	}
	tt, ok := l.(*netlink.Tuntap)
	if !ok {
		return 0, 0, fmt.Errorf("%s is a %s", name, l.Type())
	}
	return tt.Queues, tt.DisabledQueues, nil
}

// TestOpenNetQueues opens the network device as run does on real TAPs in a
// namespace: one TAP queue and backend per pair, the queues of pairs 1 and
// up detached until the guest asks for them, and the errors for a TAP that
// cannot have several queues.
func TestOpenNetQueues(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	_, vhostErr := os.Stat("/dev/vhost-net")
	err := inNewNetns(t, func() error {
		o := &netOptions{tap: "mq0", mac: [6]byte{2, 0, 0, 0, 0, 1}, vhost: vhostOff, queues: 3}
		nd, err := openNet(o, log)
		if err != nil {
			return err
		}
		if n := len(nd.dev.QueueMaxSizes()); n != 7 || nd.datapath != "userspace" {
			return fmt.Errorf("3 pairs: %d queues, datapath %s", n, nd.datapath)
		}
		if a, d, err := tapQueues("mq0"); err != nil || a != 1 || d != 2 {
			return fmt.Errorf("TAP of a 3-pair device before the guest runs: %d attached, %d detached (%v); want 1 and 2", a, d, err)
		}
		if got := nd.describe(o); !strings.HasSuffix(got, "on new TAP mq0 (deleted on exit; attach it: ip link set mq0 master hlsbr0 up), datapath userspace, 3 queue pairs") {
			return fmt.Errorf("describe: %q", got)
		}
		if err := nd.Close(); err != nil {
			return err
		}
		if _, err := netlink.LinkByName("mq0"); err == nil {
			return errors.New("the TAP hlsvmm created outlived the device")
		}

		// --vhost auto without /dev/vhost-net: the userspace datapath for
		// every pair. --vhost on: an error, and the new TAP is gone.
		if vhostErr == nil {
			t.Log("this host has /dev/vhost-net: the fallback is checked in the test bed")
		} else {
			o = &netOptions{tap: "mq1", vhost: vhostAuto, queues: 2}
			if nd, err = openNet(o, log); err != nil {
				return fmt.Errorf("--vhost auto: %w", err)
			}
			if nd.datapath != "userspace" || nd.tap.Queues() != 2 {
				return fmt.Errorf("--vhost auto without vhost-net: datapath %s, %d queues", nd.datapath, nd.tap.Queues())
			}
			nd.Close()
			o.vhost = vhostOn
			if _, err = openNet(o, log); err == nil || !strings.HasPrefix(err.Error(), "--vhost on: ") {
				return fmt.Errorf("--vhost on without vhost-net: %v", err)
			}
			if _, err := netlink.LinkByName("mq1"); err == nil {
				return errors.New("a failed --vhost on left its new TAP behind")
			}
		}

		// A TAP without multi_queue: --queues 2 is refused, the default
		// falls back to one pair, and the TAP stays.
		single := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "sq0"}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR}
		if err := netlink.LinkAdd(single); err != nil {
			return fmt.Errorf("make a single-queue TAP: %w", err)
		}
		o = &netOptions{tap: "sq0", vhost: vhostOff, queues: 2, queuesSet: true}
		_, err = openNet(o, log)
		if err == nil || !strings.Contains(err.Error(), "--tap sq0 with --queues 2: ") || !strings.Contains(err.Error(), "not a multi_queue TAP") {
			return fmt.Errorf("--queues 2 on a TAP without multi_queue: %v", err)
		}
		t.Logf("refused: %v", err)
		o.queues, o.queuesSet = 4, false
		if nd, err = openNet(o, log); err != nil {
			return fmt.Errorf("default queues on a TAP without multi_queue: %w", err)
		}
		defer nd.Close()
		if nd.tap.Queues() != 1 || len(nd.dev.QueueMaxSizes()) != 2 || !strings.HasSuffix(nd.describe(o), ", 1 queue pair") {
			return fmt.Errorf("default queues on a TAP without multi_queue: %d queues, %q", nd.tap.Queues(), nd.describe(o))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
