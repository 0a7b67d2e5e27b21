package hostnet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket bound to ifname in the host's
// namespace.
func packetSocket(t *testing.T, h *Host, ifindex int) int {
	t.Helper()
	var fd int
	if err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex})
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.Timeval{Sec: 2}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd
}

func testFrame(tag byte) []byte {
	f := make([]byte, 60)
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 0x01})  // dst
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x02}) // src
	binary.BigEndian.PutUint16(f[12:], 0x88b5)    // local experimental ethertype
	for i := 14; i < len(f); i++ {
		f[i] = tag
	}
	return f
}

func TestTapFrames(t *testing.T) {
	h, nl, _ := hostOnly(t)
	tap, err := h.OpenTap("tapt0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if err := tap.SetOffload(OffloadCsum | OffloadTSO4 | OffloadTSO6 | OffloadTSOECN); err != nil {
		t.Fatal(err)
	}
	l, err := nl.LinkByName("tapt0")
	if err != nil {
		t.Fatal(err)
	}
	if !isTap(l) {
		t.Fatalf("tapt0 is a %s", l.Type())
	}
	if err := nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	ps := packetSocket(t, h, l.Attrs().Index)

	// Guest -> host: a frame written with a (zero) vnet header arrives
	// on the interface without it.
	frame := testFrame(0xab)
	if _, err := tap.Write(append(make([]byte, VnetHdrSize), frame...)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, 2048)
	for {
		n, _, err := unix.Recvfrom(ps, buf, 0)
		if err != nil {
			t.Fatalf("frame written to the TAP did not arrive: %v", err)
		}
		if bytes.Equal(buf[:n], frame) {
			break
		}
	}

	// Host -> guest: a frame sent on the interface is read with a header.
	out := testFrame(0xcd)
	if err := unix.Sendto(ps, out, 0, &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6}); err != nil {
		t.Fatal(err)
	}
	if err := tap.Queue(0).SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := tap.Read(buf)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if n == VnetHdrSize+len(out) && bytes.Equal(buf[VnetHdrSize:n], out) {
			break
		}
	}
	if fd, err := tap.Fd(0); err != nil || fd < 0 {
		t.Errorf("Fd: %d %v", fd, err)
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tap.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := tap.Fd(0); !errors.Is(err, errClosedForTest()) {
		t.Errorf("Fd after Close: %v", err)
	}
}

func TestTapMultiQueueAndBusy(t *testing.T) {
	h, _, cfg := hostOnly(t)
	// The TAP made by setup is multi_queue: two queues attach.
	if _, err := h.Setup(cfg); err != nil {
		t.Fatal(err)
	}
	mq, err := h.OpenTap(cfg.Tap, &TapOptions{Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := mq.Fd(0)
	b, _ := mq.Fd(1)
	if mq.Queues() != 2 || a == b {
		t.Errorf("queues %d fds %d %d", mq.Queues(), a, b)
	}
	// A queue only handed to the kernel (vhost-net) stays out of Go's
	// poller; the first I/O puts it in.
	if polled(t, a) || polled(t, b) {
		t.Error("TAP queues joined the poller before any I/O")
	}
	if err := mq.Queue(1).SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := mq.ReadQueue(1, make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v", err)
	}
	if polled(t, a) || !polled(t, b) {
		t.Errorf("after I/O on queue 1 only: queue 0 polled %v (want false), queue 1 %v (want true)", polled(t, a), polled(t, b))
	}
	mq.Close()
	if _, err := mq.ReadQueue(0, make([]byte, 64)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}

	// A single-queue TAP held by one opener is busy for the next.
	var held *Tap
	if err := h.Do(func() error {
		fd, err := openTunQueue("single0", unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR)
		if err != nil {
			return err
		}
		held = &Tap{name: "single0"}
		return held.add(fd, nil)
	}); err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = h.OpenTap("single0", nil)
	if !errors.Is(err, ErrTapBusy) || !errors.Is(err, unix.EBUSY) {
		t.Errorf("open busy TAP: %v, want ErrTapBusy", err)
	}
	t.Logf("busy: %v", err)
	_, err = h.OpenTap("single0", &TapOptions{Queues: 2})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("two queues on a single-queue TAP: %v, want ErrConflict", err)
	}
}

func errClosedForTest() error { return os.ErrClosed }

// polled reports whether fd is registered with one of the process's epoll
// instances (Go's poller): an eventpoll fd's fdinfo lists "tfd: N" for
// every fd N it watches.
func polled(t *testing.T, fd int) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if link, err := os.Readlink("/proc/self/fd/" + ent.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, _ := os.ReadFile("/proc/self/fdinfo/" + ent.Name())
		for _, line := range strings.Split(string(info), "\n") {
			var tfd int
			if _, err := fmt.Sscanf(line, "tfd: %d", &tfd); err == nil && tfd == fd {
				return true
			}
		}
	}
	return false
}
