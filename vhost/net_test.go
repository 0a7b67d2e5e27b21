package vhost_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/internal/eventfd"
	"github.com/hlsvmm/hlsvmm/vhost"
	"github.com/hlsvmm/hlsvmm/vhost/vhosttest"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

const (
	version1     = 1 << virtio.FeatureVersion1
	eventIdx     = 1 << virtio.FeatureEventIdx
	indirect     = 1 << virtio.FeatureIndirectDesc
	mrgRxbuf     = 1 << 15
	anyLayout    = 1 << 27 // also VHOST_NET_F_VIRTIO_NET_HDR
	csum         = 1 << 0
	guestTSO4    = 1 << 7
	accessPlat   = 1 << virtio.FeatureAccessPlatform
	queueSize    = 256
	ramSize      = 64 << 10
	ramGuestPhys = 0x10000
)

// rig is guest RAM with an RX and a TX queue laid out in it, their
// eventfds, a socket standing in for the TAP, and a Net on a Fake.
type rig struct {
	ram    []byte
	mem    *memory.Memory
	rx, tx virtio.QueueConfig
	tap    int
	fake   *vhosttest.Fake
	net    *vhost.Net
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{ram: make([]byte, ramSize)}
	var err error
	r.mem, err = memory.FromRegions(memory.Region{GuestPhys: ramGuestPhys, Host: r.ram})
	if err != nil {
		t.Fatal(err)
	}
	r.rx = queue(t, 0, ramGuestPhys+0x1000)
	r.tx = queue(t, 1, ramGuestPhys+0x5000)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	r.tap = fds[0]
	r.fake = vhosttest.NewNet(0)
	r.net, err = vhost.NewNet(r.fake)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.net.Close() })
	r.fake.Reset()
	return r
}

// queue lays out a split queue of queueSize entries at base: descriptors,
// then the driver ring, then the device ring on the next page.
func queue(t *testing.T, index uint16, base uint64) virtio.QueueConfig {
	t.Helper()
	q := virtio.QueueConfig{Index: index, Size: queueSize, Desc: base, Driver: base + 0x1000, Device: base + 0x2000}
	var err error
	if q.Kick, err = eventfd.New(); err != nil {
		t.Fatal(err)
	}
	if q.Call, err = eventfd.New(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Kick.Close(); q.Call.Close() })
	return q
}

func (r *rig) config(features uint64) vhost.Config {
	return vhost.Config{Features: features, Memory: r.mem, RX: r.rx, TX: r.tx, Tap: r.tap}
}

func (r *rig) host(gpa uint64) uint64 {
	return uint64(uintptr(unsafe.Pointer(&r.ram[gpa-ramGuestPhys])))
}

var startSequence = []string{
	"SET_FEATURES 0x100000000",
	"SET_MEM_TABLE",
	"SET_VRING_NUM 0 256", "SET_VRING_BASE 0 0", "SET_VRING_ADDR 0", "SET_VRING_KICK 0 fd", "SET_VRING_CALL 0 fd",
	"SET_VRING_NUM 1 256", "SET_VRING_BASE 1 0", "SET_VRING_ADDR 1", "SET_VRING_KICK 1 fd", "SET_VRING_CALL 1 fd",
	"SET_BACKEND 0 fd", "SET_BACKEND 1 fd",
}

var stopSequence = []string{
	"SET_BACKEND 0 -1", "GET_VRING_BASE 0", "SET_VRING_KICK 0 -1", "SET_VRING_CALL 0 -1",
	"SET_BACKEND 1 -1", "GET_VRING_BASE 1", "SET_VRING_KICK 1 -1", "SET_VRING_CALL 1 -1",
}

func TestOpenSequence(t *testing.T) {
	f := vhosttest.NewNet(0)
	n, err := vhost.NewNet(f)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got, want := f.Ops(), []string{"SET_OWNER", "GET_FEATURES"}; !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if n.Features() != vhosttest.NetFeatures {
		t.Errorf("Features() = %#x, want %#x", n.Features(), vhosttest.NetFeatures)
	}
}

func TestStartOrder(t *testing.T) {
	r := newRig(t)
	if err := r.net.Start(r.config(version1)); err != nil {
		t.Fatal(err)
	}
	if got := r.fake.Ops(); !slices.Equal(got, startSequence) {
		t.Errorf("calls:\n got %q\nwant %q", got, startSequence)
	}
	want := []vhost.MemRegion{{GuestPhys: ramGuestPhys, Size: ramSize, UserAddr: r.host(ramGuestPhys)}}
	if got := r.fake.MemTable(); !slices.Equal(got, want) {
		t.Errorf("memory table = %+v, want %+v", got, want)
	}
	for i, q := range []virtio.QueueConfig{r.rx, r.tx} {
		vq := r.fake.Vring(i)
		wantAddr := vhost.VringAddr{Desc: r.host(q.Desc), Avail: r.host(q.Driver), Used: r.host(q.Device)}
		if vq.Addr != wantAddr {
			t.Errorf("vring %d addr = %+v, want %+v", i, vq.Addr, wantAddr)
		}
		if vq.Num != queueSize || vq.Kick != q.Kick.Fd() || vq.Call != q.Call.Fd() || vq.Backend != r.tap {
			t.Errorf("vring %d = %+v, want num %d kick %d call %d backend %d",
				i, vq, queueSize, q.Kick.Fd(), q.Call.Fd(), r.tap)
		}
	}
}

func TestStartMasksFeatures(t *testing.T) {
	r := newRig(t)
	acked := uint64(version1 | eventIdx | indirect | mrgRxbuf | anyLayout | csum | guestTSO4 | accessPlat)
	if err := r.net.Start(r.config(acked)); err != nil {
		t.Fatal(err)
	}
	want := uint64(version1 | eventIdx | indirect | mrgRxbuf)
	if got := r.fake.Features(); got != want {
		t.Errorf("SET_FEATURES %#x, want %#x (no offloads, no VHOST_NET_F_VIRTIO_NET_HDR, no ACCESS_PLATFORM)", got, want)
	}
}

func TestStartRefusesBeforeAnyIoctl(t *testing.T) {
	for _, tc := range []struct {
		name     string
		offered  uint64
		features uint64
		change   func(r *rig, c *vhost.Config)
		is       error
		msg      string
	}{
		{name: "no VERSION_1 accepted", features: eventIdx, msg: "VIRTIO_F_VERSION_1"},
		{name: "ring feature vhost lacks", offered: vhosttest.NetFeatures &^ eventIdx,
			features: version1 | eventIdx, msg: "does not offer: 0x20000000"},
		{name: "desc outside RAM", change: func(r *rig, c *vhost.Config) { c.RX.Desc = ramGuestPhys + ramSize }, is: memory.ErrOutOfRange, msg: "descriptor table"},
		{name: "desc below RAM", change: func(r *rig, c *vhost.Config) { c.TX.Desc = 0 }, is: memory.ErrOutOfRange, msg: "queue 1"},
		{name: "used ring straddles end", change: func(r *rig, c *vhost.Config) { c.TX.Device = ramGuestPhys + ramSize - 8 }, is: memory.ErrOutOfRange, msg: "device ring"},
		{name: "driver ring wraps", change: func(r *rig, c *vhost.Config) { c.RX.Driver = ^uint64(1) }, is: memory.ErrOutOfRange, msg: "driver ring"},
		{name: "misaligned desc", change: func(r *rig, c *vhost.Config) { c.RX.Desc += 8 }, msg: "16-byte aligned"},
		{name: "misaligned used", change: func(r *rig, c *vhost.Config) { c.RX.Device += 2 }, msg: "4-byte aligned"},
		{name: "size not a power of two", change: func(r *rig, c *vhost.Config) { c.TX.Size = 100 }, msg: "queue size 100"},
		{name: "size zero", change: func(r *rig, c *vhost.Config) { c.RX.Size = 0 }, msg: "queue size 0"},
		{name: "no kick", change: func(r *rig, c *vhost.Config) { c.RX.Kick = nil }, msg: "eventfd"},
		{name: "no memory", change: func(r *rig, c *vhost.Config) { c.Memory = nil }, msg: "no guest memory"},
		{name: "bad tap", change: func(r *rig, c *vhost.Config) { c.Tap = -1 }, msg: "TAP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			if tc.offered != 0 {
				r.fake = vhosttest.NewNet(tc.offered)
				var err error
				if r.net, err = vhost.NewNet(r.fake); err != nil {
					t.Fatal(err)
				}
				r.fake.Reset()
			}
			if tc.features == 0 {
				tc.features = version1
			}
			c := r.config(tc.features)
			if tc.change != nil {
				tc.change(r, &c)
			}
			err := r.net.Start(c)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
			if calls := r.fake.Calls(); len(calls) != 0 {
				t.Errorf("the kernel saw %v", calls)
			}
		})
	}
}

// A client that attaches the backend before sizing the ring gets EBUSY from
// the fake, as from the kernel.
func TestFakeEBUSYCatchesWrongOrder(t *testing.T) {
	r := newRig(t)
	f := r.fake
	if err := f.SetMemTable([]vhost.MemRegion{{GuestPhys: ramGuestPhys, Size: ramSize, UserAddr: r.host(ramGuestPhys)}}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetVringAddr(0, vhost.VringAddr{Desc: r.host(r.rx.Desc), Avail: r.host(r.rx.Driver), Used: r.host(r.rx.Device)}); err != nil {
		t.Fatal(err)
	}
	if err := f.SetBackend(0, r.tap); err != nil {
		t.Fatal(err)
	}
	if err := f.SetVringNum(0, queueSize); !errors.Is(err, unix.EBUSY) {
		t.Errorf("SET_VRING_NUM with a backend: %v, want EBUSY", err)
	}
	if err := f.SetVringBase(0, 0); !errors.Is(err, unix.EBUSY) {
		t.Errorf("SET_VRING_BASE with a backend: %v, want EBUSY", err)
	}
	// The kernel re-checks access instead of refusing a new address.
	if err := f.SetVringAddr(0, vhost.VringAddr{Desc: 0x10, Avail: 0x10, Used: 0x10}); !errors.Is(err, unix.EINVAL) {
		t.Errorf("SET_VRING_ADDR outside memory with a backend: %v, want EINVAL", err)
	}
	if err := f.SetBackend(1, r.tap); !errors.Is(err, unix.EFAULT) {
		t.Errorf("SET_BACKEND on a vring without addresses: %v, want EFAULT", err)
	}
	// Net refuses to start twice rather than letting the kernel say EBUSY.
	if err := r.net.Start(r.config(version1)); err == nil {
		t.Fatal(err)
	}
	r2 := newRig(t)
	if err := r2.net.Start(r2.config(version1)); err != nil {
		t.Fatal(err)
	}
	if err := r2.net.Start(r2.config(version1)); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Errorf("second Start: %v", err)
	}
}

func TestFakeMirrorsKernelRules(t *testing.T) {
	r := newRig(t)
	notOwned := vhosttest.NewNet(0)
	efd := r.rx.Kick.Fd()
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"owner twice", r.fake.SetOwner, unix.EBUSY},
		{"vring call without owner", func() error { return notOwned.SetVringNum(0, 8) }, unix.EPERM},
		{"mem table without owner", func() error { return notOwned.SetMemTable(nil) }, unix.EPERM},
		{"backend without owner", func() error { return notOwned.SetBackend(0, -1) }, unix.EPERM},
		{"features beyond offered", func() error { return r.fake.SetFeatures(csum) }, unix.EOPNOTSUPP},
		{"vring index 2", func() error { return r.fake.SetVringNum(2, 8) }, unix.ENOBUFS},
		{"num not a power of two", func() error { return r.fake.SetVringNum(0, 3) }, unix.EINVAL},
		{"num too big", func() error { return r.fake.SetVringNum(0, 1<<16) }, unix.EINVAL},
		{"base too big", func() error { return r.fake.SetVringBase(0, 1<<16) }, unix.EINVAL},
		{"misaligned used", func() error { return r.fake.SetVringAddr(0, vhost.VringAddr{Used: 2}) }, unix.EINVAL},
		{"kick not an eventfd", func() error { return r.fake.SetVringKick(0, r.tap) }, unix.EINVAL},
		{"call on a closed fd", func() error { return r.fake.SetVringCall(0, 1<<20) }, unix.EBADF},
		{"empty memory region", func() error { return r.fake.SetMemTable([]vhost.MemRegion{{GuestPhys: 0, Size: 0, UserAddr: 4096}}) }, unix.EFAULT},
		{"too many regions", func() error { return r.fake.SetMemTable(make([]vhost.MemRegion, 65)) }, unix.E2BIG},
	} {
		if err := tc.call(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A backend must be a TAP or a socket.
	mem := []vhost.MemRegion{{GuestPhys: ramGuestPhys, Size: ramSize, UserAddr: r.host(ramGuestPhys)}}
	if err := r.fake.SetMemTable(mem); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.SetVringAddr(0, vhost.VringAddr{Desc: r.host(r.rx.Desc), Avail: r.host(r.rx.Driver), Used: r.host(r.rx.Device)}); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.SetBackend(0, efd); !errors.Is(err, unix.ENOTSOCK) {
		t.Errorf("eventfd as backend: %v, want ENOTSOCK", err)
	}
}

func TestStopThenStart(t *testing.T) {
	r := newRig(t)
	if err := r.net.Start(r.config(version1)); err != nil {
		t.Fatal(err)
	}
	r.fake.Consume(vhost.VringRX, 5)
	r.fake.Consume(vhost.VringTX, 7)
	r.fake.Reset()
	if err := r.net.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := r.fake.Ops(); !slices.Equal(got, stopSequence) {
		t.Errorf("Stop calls:\n got %q\nwant %q", got, stopSequence)
	}
	if rx, tx := r.net.Bases(); rx != 5 || tx != 7 {
		t.Errorf("saved bases %d, %d; want 5, 7", rx, tx)
	}
	for i := range 2 {
		if vq := r.fake.Vring(i); vq.Backend != -1 || vq.Kick != -1 || vq.Call != -1 {
			t.Errorf("vring %d after Stop: %+v", i, vq)
		}
	}
	if r.fake.Closed() {
		t.Error("Stop closed the descriptor")
	}
	if err := r.net.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	// Driver reset and reload: the rings start over at 0.
	r.fake.Reset()
	if err := r.net.Start(r.config(version1)); err != nil {
		t.Fatal(err)
	}
	if got := r.fake.Ops(); !slices.Equal(got, startSequence) {
		t.Errorf("restart calls:\n got %q\nwant %q", got, startSequence)
	}

	// Resume: the saved indexes come back.
	r.fake.Consume(vhost.VringRX, 3)
	r.fake.Consume(vhost.VringTX, 0xffff) // wraps to 0xffff
	if err := r.net.Stop(); err != nil {
		t.Fatal(err)
	}
	r.fake.Reset()
	c := r.config(version1)
	c.Resume = true
	if err := r.net.Start(c); err != nil {
		t.Fatal(err)
	}
	ops := r.fake.Ops()
	for _, want := range []string{"SET_VRING_BASE 0 3", "SET_VRING_BASE 1 65535"} {
		if !slices.Contains(ops, want) {
			t.Errorf("resume calls %q lack %q", ops, want)
		}
	}
}

// Failing each step of Start in turn: the error names the step and keeps
// the errno, everything attached so far is detached again, and a later
// Start works.
func TestStartFailureRollsBack(t *testing.T) {
	steps := map[string]string{
		"SET_FEATURES": "set vhost-net features", "SET_MEM_TABLE": "set vhost-net memory table",
		"SET_VRING_NUM": "set vring num 256 for queue", "SET_VRING_BASE": "set vring base 0 for queue",
		"SET_VRING_ADDR": "set vring addr for queue", "SET_VRING_KICK": "set vring kick for queue",
		"SET_VRING_CALL": "set vring call for queue", "SET_BACKEND": "set vhost-net backend for queue",
	}
	for k := range startSequence {
		t.Run(startSequence[k], func(t *testing.T) {
			r := newRig(t)
			n := 0
			var failed vhosttest.Call
			r.fake.Fail = func(c vhosttest.Call) error {
				if n++; n == k+1 {
					failed = c
					return unix.EBUSY
				}
				return nil
			}
			err := r.net.Start(r.config(version1))
			if !errors.Is(err, unix.EBUSY) {
				t.Fatalf("Start: %v, want an error wrapping EBUSY", err)
			}
			want := steps[failed.Op]
			if strings.HasSuffix(want, "queue") {
				want += fmt.Sprintf(" %d", failed.Vring)
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
			for i := range 2 {
				if vq := r.fake.Vring(i); vq.Backend != -1 || vq.Kick != -1 || vq.Call != -1 {
					t.Errorf("vring %d after failed Start: %+v", i, vq)
				}
			}
			r.fake.Fail = nil
			if err := r.net.Start(r.config(version1)); err != nil {
				t.Errorf("Start after a failed one: %v", err)
			}
		})
	}
}

func TestCloseIdempotent(t *testing.T) {
	r := newRig(t)
	if err := r.net.Start(r.config(version1)); err != nil {
		t.Fatal(err)
	}
	r.fake.Reset()
	if err := r.net.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.net.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	want := append(slices.Clone(stopSequence), "CLOSE")
	if got := r.fake.Ops(); !slices.Equal(got, want) {
		t.Errorf("Close calls:\n got %q\nwant %q", got, want)
	}
	if err := r.net.Start(r.config(version1)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Start after Close: %v, want os.ErrClosed", err)
	}
	if err := r.net.Stop(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Stop after Close: %v, want os.ErrClosed", err)
	}
}

func TestNewNetFailures(t *testing.T) {
	f := vhosttest.NewNet(vhosttest.NetFeatures &^ version1)
	_, err := vhost.NewNet(f)
	var ns *vhost.NotSupportedError
	if !errors.As(err, &ns) || !errors.Is(err, vhost.ErrNotSupported) || ns.Missing != version1 {
		t.Errorf("without VERSION_1: %v, want a NotSupportedError for bit 32", err)
	}
	if err != nil && !strings.Contains(err.Error(), "VIRTIO_F_VERSION_1") {
		t.Errorf("message %q does not name the missing feature", err)
	}
	if errors.Is(err, vhost.ErrNotAvailable) {
		t.Error("not supported is not the same as not available")
	}
	if !f.Closed() {
		t.Error("NewNet left the device open after failing")
	}

	f = vhosttest.NewNet(0)
	f.Fail = func(c vhosttest.Call) error {
		if c.Op == "GET_FEATURES" {
			return unix.EIO
		}
		return nil
	}
	if _, err := vhost.NewNet(f); !errors.Is(err, unix.EIO) || !strings.Contains(err.Error(), "get vhost-net features") {
		t.Errorf("GET_FEATURES failing: %v", err)
	}
	if !f.Closed() {
		t.Error("NewNet left the device open after failing")
	}
}
