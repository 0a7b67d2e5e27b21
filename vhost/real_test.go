package vhost_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/vhost"
	"github.com/hlsvmm/hlsvmm/virtio"
	"github.com/hlsvmm/hlsvmm/vmm/memory"
)

// The tests below use the kernel's /dev/vhost-net. The development and CI
// machines have none, so there they skip; tests/vhost/real.sh runs them in
// the nested test bed with HLSVMM_REQUIRE_VHOST=1, which turns a missing
// device into a failure.

func openRealNet(t *testing.T) *vhost.Net {
	t.Helper()
	n, err := vhost.OpenNet()
	switch {
	case err == nil:
		return n
	case os.Getenv("HLSVMM_REQUIRE_VHOST") == "1":
		t.Fatalf("HLSVMM_REQUIRE_VHOST=1 but: %v", err)
	case errors.Is(err, vhost.ErrNotAvailable):
		t.Skipf("%v\n(this test needs a kernel with vhost-net: run tests/vhost/real.sh, which runs it in the test bed)", err)
	default:
		t.Fatal(err)
	}
	return nil
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestRealOpenClose(t *testing.T) {
	before := countFDs(t)
	n := openRealNet(t)
	if !virtio.HasFeature(n.Features(), virtio.FeatureVersion1) {
		t.Errorf("features %#x lack VERSION_1 yet OpenNet succeeded", n.Features())
	}
	t.Logf("vhost-net offers %#x", n.Features())
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if after := countFDs(t); after != before {
		t.Errorf("%d descriptors before, %d after", before, after)
	}
}

const (
	realQueue = 16
	rxBase    = 0x10000 // RX rings
	txBase    = 0x20000 // TX rings
	bufBase   = 0x40000 // packet buffers, 4 KiB each
	etherType = 0x88b5  // IEEE local experimental
)

var guestMAC = []byte{0x02, 0x00, 0x00, 0x01, 0x77, 0x01}

// realRing is a split ring in guest memory, written as a driver would.
type realRing struct {
	mem  *memory.Memory
	q    virtio.QueueConfig
	next uint16 // avail idx
}

func (r *realRing) put(t *testing.T, gpa uint64, b []byte) {
	t.Helper()
	s, err := r.mem.Slice(gpa, uint64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	copy(s, b)
}

func (r *realRing) u16(t *testing.T, gpa uint64) uint16 {
	t.Helper()
	s, err := r.mem.Slice(gpa, 2)
	if err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint16(s)
}

// add publishes descriptor d (one buffer) in the driver ring.
func (r *realRing) add(t *testing.T, d uint16, addr uint64, length uint32, write bool) {
	t.Helper()
	var desc [16]byte
	binary.LittleEndian.PutUint64(desc[0:], addr)
	binary.LittleEndian.PutUint32(desc[8:], length)
	if write {
		binary.LittleEndian.PutUint16(desc[12:], 2) // VIRTQ_DESC_F_WRITE
	}
	r.put(t, r.q.Desc+16*uint64(d), desc[:])
	var e [2]byte
	binary.LittleEndian.PutUint16(e[:], d)
	r.put(t, r.q.Driver+4+2*uint64(r.next%realQueue), e[:])
	r.next++
	binary.LittleEndian.PutUint16(e[:], r.next)
	r.put(t, r.q.Driver+2, e[:]) // x86 stores are ordered: idx after the entry
}

// waitUsed waits until the device ring's idx reaches n.
func (r *realRing) waitUsed(t *testing.T, n uint16, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // emulated test bed: slow, never a measurement
	for r.u16(t, r.q.Device+2) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: used idx %d, want %d after 30 s", what, r.u16(t, r.q.Device+2), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *realRing) zero(t *testing.T) {
	r.put(t, r.q.Desc, make([]byte, 3*0x1000))
	r.next = 0
}

// makeTap creates a TAP the way hlsvmm does (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR,
// header size 12), brings it up and returns it and its index. It goes away
// when the file is closed.
func makeTap(t *testing.T) (tap *os.File, index int) {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/net/tun: %v", err)
	}
	f := os.NewFile(uintptr(fd), "tap")
	t.Cleanup(func() { f.Close() })
	ifr, err := unix.NewIfreq("hlsvt%d")
	if err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatalf("TUNSETIFF (needs CAP_NET_ADMIN): %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, 12); err != nil {
		t.Fatalf("TUNSETVNETHDRSZ: %v", err)
	}
	name := ifr.Name()
	// No IPv6 chatter from the host into the guest's receive ring.
	os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	up, _ := unix.NewIfreq(name)
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, up); err != nil {
		t.Fatal(err)
	}
	up.SetUint16(up.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, up); err != nil {
		t.Fatalf("bring %s up: %v", name, err)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return f, ifi.Index
}

// packetSocket is an AF_PACKET socket on the TAP: the host side of the wire.
func packetSocket(t *testing.T, index int) (*os.File, int) {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(s), "packet")
	t.Cleanup(func() { f.Close() })
	if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Sec: 30}
	if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return f, s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func frame(dst []byte, payload string) []byte {
	f := make([]byte, 60)
	copy(f, dst)
	copy(f[6:], []byte{0x02, 0, 0, 0, 0, 0x99})
	binary.BigEndian.PutUint16(f[12:], etherType)
	copy(f[14:], payload)
	return f
}

// TestRealDatapath moves one frame each way through the kernel's vhost-net
// and a real TAP, stops (saving the ring indexes), resets the rings as a
// reloading driver would, starts again and sends once more.
func TestRealDatapath(t *testing.T) {
	before := countFDs(t)
	n := openRealNet(t)
	defer n.Close()
	tapFile, index := makeTap(t)
	tap := int(tapFile.Fd())
	psFile, ps := packetSocket(t, index)

	mem, err := memory.New(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	rx := &realRing{mem: mem, q: queue(t, 0, rxBase)}
	tx := &realRing{mem: mem, q: queue(t, 1, txBase)}
	rx.q.Size, tx.q.Size = realQueue, realQueue
	cfg := vhost.Config{Features: version1, Memory: mem, RX: rx.q, TX: tx.q, Tap: tap}

	for round := 1; round <= 2; round++ {
		for d := range uint16(4) { // receive buffers
			rx.add(t, d, bufBase+uint64(d)*0x1000, 0x1000, true)
		}
		if err := n.Start(cfg); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}

		// Guest → host.
		payload := fmt.Sprintf("hlsvmm vhost tx %d", round)
		txBuf := uint64(bufBase + 0x10000)
		out := append(make([]byte, 12), frame([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, payload)...)
		tx.put(t, txBuf, out)
		tx.add(t, 0, txBuf, uint32(len(out)), false)
		if err := tx.q.Kick.Signal(); err != nil {
			t.Fatal(err)
		}
		tx.waitUsed(t, 1, "transmit")
		buf := make([]byte, 2048)
		for {
			m, _, err := unix.Recvfrom(ps, buf, 0)
			if err != nil {
				t.Fatalf("round %d: the transmitted frame never reached the host: %v", round, err)
			}
			if bytes.Contains(buf[:m], []byte(payload)) {
				break
			}
		}

		// Host → guest.
		payload = fmt.Sprintf("hlsvmm vhost rx %d", round)
		in := frame(guestMAC, payload)
		to := &unix.SockaddrLinklayer{Ifindex: index, Halen: 6, Protocol: htons(etherType)}
		copy(to.Addr[:], guestMAC)
		if err := unix.Sendto(ps, in, 0, to); err != nil {
			t.Fatal(err)
		}
		found := false
		for u := uint16(1); u <= 4 && !found; u++ {
			rx.waitUsed(t, u, "receive")
			e, _ := mem.Slice(rx.q.Device+4+8*uint64(u-1), 8)
			id, length := binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
			got, _ := mem.Slice(bufBase+uint64(id)*0x1000, uint64(length))
			found = length >= 12 && bytes.Equal(got[12:], in)
		}
		if !found {
			t.Fatalf("round %d: the frame sent to the TAP never reached the receive ring", round)
		}

		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
		gotRX, gotTX := n.Bases()
		if gotTX != 1 || gotRX == 0 {
			t.Errorf("round %d: saved bases rx %d tx %d, want rx ≥ 1, tx 1", round, gotRX, gotTX)
		}
		// The driver resets: rings zeroed, indexes start over.
		rx.zero(t)
		tx.zero(t)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mem.Close(); err != nil {
		t.Fatal(err)
	}
	psFile.Close()
	tapFile.Close()
	for _, q := range []virtio.QueueConfig{rx.q, tx.q} {
		q.Kick.Close()
		q.Call.Close()
	}
	if after := countFDs(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}
