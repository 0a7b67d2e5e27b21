package hostnet

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestTapQueueView(t *testing.T) {
	h, _, _ := hostOnly(t)
	tap, err := h.OpenTap("tapq0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	q := tap.Queue(0)
	if want, _ := tap.Fd(0); q.Fd() != want || want < 0 {
		t.Errorf("Fd %d, want %d", q.Fd(), want)
	}
	if err := q.SetOffload(unix.TUN_F_CSUM | unix.TUN_F_TSO4); err != nil {
		t.Fatal(err)
	}
	// A deadline in the past ends a parked Read; the zero time clears it.
	done := make(chan error, 1)
	go func() {
		_, err := q.Read(make([]byte, 2048))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := q.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read after a past deadline: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still parked after a past deadline")
	}
	if err := q.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	tap.Close()
	if fd := q.Fd(); fd != -1 {
		t.Errorf("Fd after Close: %d, want -1", fd)
	}
}

// rawSetQueue issues TUNSETQUEUE on fd behind the Tap's back, to ask the
// kernel what state the queue is in: it refuses (EINVAL) to attach an
// attached queue or detach a detached one.
func rawSetQueue(fd int, flags uint16) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	ifr.SetUint16(flags)
	return unix.IoctlIfreq(fd, unix.TUNSETQUEUE, ifr)
}

// wantKernelState checks through the kernel that queue i of tap is attached
// (on) or detached: repeating the state it has is EINVAL.
func wantKernelState(t *testing.T, tap *Tap, i int, on bool) {
	t.Helper()
	fd, err := tap.Fd(i)
	if err != nil {
		t.Fatal(err)
	}
	flags := uint16(unix.IFF_DETACH_QUEUE)
	if on {
		flags = unix.IFF_ATTACH_QUEUE
	}
	if err := rawSetQueue(fd, flags); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("queue %d: kernel accepted setting it to attached=%v again (%v): it was not in that state", i, on, err)
	}
}

func TestTapSetQueueEnabled(t *testing.T) {
	h, nl, _ := hostOnly(t)
	tap, err := h.OpenTap("tapmq0", &TapOptions{Queues: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	l, err := nl.LinkByName("tapmq0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	counts := func() (int, int) {
		t.Helper()
		l, err := nl.LinkByName("tapmq0")
		if err != nil {
			t.Fatal(err)
		}
		tt, ok := l.(*netlink.Tuntap)
		if !ok {
			t.Fatalf("tapmq0 is a %s", l.Type())
		}
		return tt.Queues, tt.DisabledQueues
	}
	if a, d := counts(); a != 3 || d != 0 {
		t.Fatalf("after open: %d attached, %d detached queues; want 3, 0", a, d)
	}
	for _, i := range []int{1, 2, 2} { // the second detach of queue 2 does nothing
		if err := tap.Queue(i).SetQueueEnabled(false); err != nil {
			t.Fatalf("detach queue %d: %v", i, err)
		}
	}
	if a, d := counts(); a != 1 || d != 2 {
		t.Fatalf("after detaching 1 and 2: %d attached, %d detached; want 1, 2", a, d)
	}
	wantKernelState(t, tap, 1, false)
	wantKernelState(t, tap, 0, true)
	// The kernel steers every flow to queue 0 now.
	ps := packetSocket(t, h, l.Attrs().Index)
	if got := steer(t, tap, ps, l.Attrs().Index, 1000); got[1]+got[2] != 0 || got[0] != flows {
		t.Fatalf("with queues 1 and 2 detached, %v of %d flows arrived on queues 0, 1, 2", got, flows)
	}
	// A detached tun queue keeps working as a file (the kernel keeps it
	// bound to the device): offloads can be set through it, a read parks.
	if err := tap.Queue(2).SetOffload(unix.TUN_F_CSUM); err != nil {
		t.Errorf("offloads through a detached queue: %v", err)
	}
	for _, i := range []int{1, 1} {
		if err := tap.Queue(i).SetQueueEnabled(true); err != nil {
			t.Fatalf("attach queue 1: %v", err)
		}
	}
	if a, d := counts(); a != 2 || d != 1 {
		t.Fatalf("after attaching 1: %d attached, %d detached; want 2, 1", a, d)
	}
	wantKernelState(t, tap, 1, true)
	if got := steer(t, tap, ps, l.Attrs().Index, 2000); got[1] == 0 || got[2] != 0 || got[0]+got[1] != flows {
		t.Fatalf("with queue 2 detached, %v of %d flows arrived on queues 0, 1, 2: want some on 1, none on 2", got, flows)
	}
	if err := tap.SetQueueEnabled(3, false); err == nil {
		t.Error("detaching queue 3 of 3 accepted")
	}
	q := tap.Queue(1)
	tap.Close()
	if err := q.SetQueueEnabled(false); !errors.Is(err, os.ErrClosed) {
		t.Errorf("detach after Close: %v, want os.ErrClosed", err)
	}
}

func TestTapSetQueueEnabledSingleQueue(t *testing.T) {
	h, _, _ := hostOnly(t)
	var tap *Tap
	if err := h.Do(func() error {
		f, err := openTunQueue("single1", unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR)
		if err != nil {
			return err
		}
		tap = &Tap{name: "single1"}
		return tap.add(f, nil)
	}); err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	err := tap.Queue(0).SetQueueEnabled(false)
	if !errors.Is(err, unix.EINVAL) {
		t.Fatalf("detaching the queue of a TAP without multi_queue: %v, want EINVAL", err)
	}
	t.Logf("refused: %v", err)
	if err := tap.Queue(0).SetQueueEnabled(true); err != nil {
		t.Errorf("attaching the attached queue: %v, want nothing done", err)
	}
}

func TestMacvtapSetQueueEnabled(t *testing.T) {
	_, nl, _ := hostOnly(t)
	parent := addLink(t, nl, "lan1")
	la := netlink.NewLinkAttrs()
	la.Name = "hlsmv1"
	la.ParentIndex = parent.Attrs().Index
	if err := nl.LinkAdd(&netlink.Macvtap{Macvlan: netlink.Macvlan{LinkAttrs: la, Mode: netlink.MACVLAN_MODE_BRIDGE}}); err != nil {
		t.Fatal(err)
	}
	mv, err := nl.LinkByName("hlsmv1")
	if err != nil {
		t.Fatal(err)
	}
	if err := waitDevice(MacvtapDevice(mv.Attrs().Index)); err != nil {
		t.Fatal(err)
	}
	tap, err := OpenMacvtap(mv.Attrs().Index, &TapOptions{Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if tap.Queues() != 2 {
		t.Fatalf("%d queues", tap.Queues())
	}
	wantKernelState(t, tap, 1, true)
	for range 2 {
		if err := tap.Queue(1).SetQueueEnabled(false); err != nil {
			t.Fatalf("detach macvtap queue 1: %v", err)
		}
	}
	wantKernelState(t, tap, 1, false)
	wantKernelState(t, tap, 0, true)
	if err := tap.Queue(1).SetQueueEnabled(true); err != nil {
		t.Fatalf("attach macvtap queue 1: %v", err)
	}
	wantKernelState(t, tap, 1, true)
}

// flows is how many UDP flows steer sends: with three queues attached the
// chance that none lands on a given one of them is (2/3)^flows.
const flows = 48

// steer sends one UDP/IPv4 frame per flow (source ports base, base+1, ...)
// out of the TAP through the packet socket ps and counts on which queue
// each arrives.
func steer(t *testing.T, tap *Tap, ps, ifindex int, base uint16) [3]int {
	t.Helper()
	for i := range uint16(flows) {
		if err := unix.Sendto(ps, udpFrame(base+i), 0, &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}); err != nil {
			t.Fatal(err)
		}
	}
	var got [3]int
	seen := make(map[uint16]bool)
	buf := make([]byte, 2048)
	for q := range 3 {
		f, err := tap.File(q)
		if err != nil {
			t.Fatal(err)
		}
		f.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, err := f.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatalf("read queue %d: %v", q, err)
			}
			frame := buf[VnetHdrSize:n]
			if len(frame) < 42 || binary.BigEndian.Uint16(frame[12:]) != unix.ETH_P_IP || frame[23] != unix.IPPROTO_UDP {
				continue // the kernel's own traffic (IPv6 autoconfiguration)
			}
			if sport := binary.BigEndian.Uint16(frame[34:]); sport >= base && sport < base+flows && !seen[sport] {
				seen[sport] = true
				got[q]++
			}
		}
	}
	return got
}

// udpFrame is an Ethernet/IPv4/UDP frame from 10.9.0.1:sport to
// 10.9.0.2:9 (the IPv4 checksum is not checked by the TAP).
func udpFrame(sport uint16) []byte {
	f := make([]byte, 14+20+8+4)
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x01})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x02})
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], 20+8+4)
	copy(ip[12:], []byte{10, 9, 0, 1, 10, 9, 0, 2})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], 8+4)
	return f
}
