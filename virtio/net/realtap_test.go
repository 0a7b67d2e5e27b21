package net

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/hlsvmm/hlsvmm/virtio/virtiotest"
	"golang.org/x/sys/unix"
)

// realTap is a TAP opened the way hostnet opens one (IFF_TAP|IFF_NO_PI|
// IFF_VNET_HDR, 12-byte header), inside a network namespace of the test's
// own. It satisfies Tap with an *os.File, like hostnet.Tap.
type realTap struct {
	f       *os.File
	ifindex int
}

func (r *realTap) Fd() int                           { return int(r.f.Fd()) }
func (r *realTap) Read(p []byte) (int, error)        { return r.f.Read(p) }
func (r *realTap) Write(p []byte) (int, error)       { return r.f.Write(p) }
func (r *realTap) SetReadDeadline(t time.Time) error { return r.f.SetReadDeadline(t) }

// SetQueueEnabled is not called on a one-pair device's TAP.
func (r *realTap) SetQueueEnabled(on bool) error {
	return errors.New("realTap: a single-queue TAP cannot attach or detach its queue")
}

func (r *realTap) SetOffload(flags uint) error {
	c, err := r.f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := c.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, int(flags)) }); err != nil {
		return err
	}
	return ierr
}

// needPrivilege skips (or under CI=true fails) when the host cannot give
// the test a TAP in a namespace.
func needPrivilege(t *testing.T, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s: %v (run as root on a host with /dev/net/tun)", what, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// openTapInNetns creates a fresh network namespace on a locked OS thread
// that is then thrown away, makes a TAP in it, brings it up and opens an
// AF_PACKET socket on it for ethertype proto. The descriptors stay valid
// from any thread.
func openTapInNetns(t *testing.T, proto uint16) (*realTap, int) {
	type result struct {
		tap  *realTap
		sock int
		what string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		fail := func(what string, err error) { ch <- result{what: what, err: err} }
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fail("unshare network namespace", err)
			return
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			fail("open /dev/net/tun", err)
			return
		}
		ifr, _ := unix.NewIfreq("hlstest0")
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			fail("TUNSETIFF", err)
			return
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, HeaderSize); err != nil {
			unix.Close(fd)
			fail("TUNSETVNETHDRSZ", err)
			return
		}
		// No IPv6 autoconfiguration chatter on the link.
		os.WriteFile("/proc/sys/net/ipv6/conf/hlstest0/disable_ipv6", []byte("1"), 0)
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			unix.Close(fd)
			fail("packet socket", err)
			return
		}
		up, _ := unix.NewIfreq("hlstest0")
		err = unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, up)
		if err == nil {
			up.SetUint16(up.Uint16() | unix.IFF_UP)
			err = unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, up)
		}
		idx, _ := unix.NewIfreq("hlstest0")
		if err == nil {
			err = unix.IoctlIfreq(s, unix.SIOCGIFINDEX, idx)
		}
		ifindex := int(idx.Uint32())
		if err == nil {
			err = unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex})
		}
		if err != nil {
			unix.Close(fd)
			unix.Close(s)
			fail("bring up hlstest0 and bind a packet socket", err)
			return
		}
		ch <- result{tap: &realTap{f: os.NewFile(uintptr(fd), "hlstest0"), ifindex: ifindex}, sock: s}
	}()
	r := <-ch
	if r.err != nil {
		if errors.Is(r.err, unix.EPERM) || errors.Is(r.err, unix.ENOENT) || errors.Is(r.err, unix.EACCES) {
			needPrivilege(t, r.what, r.err)
		}
		t.Fatalf("%s: %v", r.what, r.err)
	}
	t.Cleanup(func() { r.tap.f.Close(); unix.Close(r.sock) })
	return r.tap, r.sock
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// ethFrame is a broadcast Ethernet frame with a local experimental
// ethertype so nothing else on the link matches it.
func ethFrame(src [6]byte, proto uint16, payload []byte) []byte {
	f := append(bytes.Repeat([]byte{0xff}, 6), src[:]...)
	f = binary.BigEndian.AppendUint16(f, proto)
	return append(f, payload...)
}

func TestUserspaceRealTap(t *testing.T) {
	const proto = 0x88b5 // IEEE local experimental ethertype
	tap, sock := openTapInNetns(t, proto)
	m := new(Metrics)
	dev, err := New(Config{Pairs: []Pair{{NewUserspace(tap, &UserspaceOptions{Metrics: m}), tap}}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	acked := v1 | mrg | eventIdx | 1<<FeatureGuestCsum | 1<<FeatureGuestTSO4 | 1<<FeatureGuestTSO6 | 1<<FeatureGuestECN | 1<<FeatureCsum
	g, rx, tx, a, broken := activation(t, acked, 64)
	if err := dev.Activate(a); err != nil {
		t.Fatalf("activate (includes TUNSETOFFLOAD with every guest offload): %v", err)
	}

	// Guest → host: the frame appears on the TAP interface byte-exact.
	out := ethFrame(DefaultMAC(), proto, pattern(1200, 3))
	tx.AddChain(virtiotest.Buf{Data: make([]byte, HeaderSize)}, virtiotest.Buf{Data: out})
	tx.KickDevice()
	got := make([]byte, 4096)
	unix.SetsockoptTimeval(sock, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
	n, _, err := unix.Recvfrom(sock, got, 0)
	if err != nil {
		t.Fatalf("frame sent by the guest did not reach the TAP interface: %v", err)
	}
	if !bytes.Equal(got[:n], out) {
		t.Fatalf("TAP interface got %d bytes, want the %d-byte frame", n, len(out))
	}
	tx.WaitUsed(wait)

	// Host → guest: a frame sent out of the TAP interface lands in the
	// guest's buffers after a 12-byte header, spread over merged buffers.
	var posted []virtiotest.Posted
	for range 8 {
		posted = append(posted, rx.AddChain(virtiotest.Buf{Len: 1024, Write: true}))
	}
	rx.KickDevice()
	in := ethFrame([6]byte{0x02, 0, 0, 0, 0, 0x99}, proto, pattern(1400, 7)) // within the 1500-byte MTU
	if err := unix.Sendto(sock, in, 0, &unix.SockaddrLinklayer{Ifindex: tap.ifindex, Protocol: htons(proto), Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}); err != nil {
		t.Fatalf("send into the TAP interface: %v", err)
	}
	var data []byte
	first := rx.WaitUsed(wait)
	data = append(data, g.Bytes(posted[first.ID].Addr[0], uint64(first.Len))...)
	nbuf := binary.LittleEndian.Uint16(data[numBuffersOff:])
	for range int(nbuf) - 1 {
		e := rx.WaitUsed(wait)
		data = append(data, g.Bytes(posted[e.ID].Addr[0], uint64(e.Len))...)
	}
	if nbuf != 2 || !bytes.Equal(data[HeaderSize:], in) {
		t.Fatalf("guest got %d bytes in %d buffers, want the %d-byte frame in 2", len(data)-HeaderSize, nbuf, len(in))
	}
	select {
	case err := <-broken:
		t.Fatalf("device broken: %v", err)
	default:
	}
	dev.Reset()
	if s := m.Snapshot(); s.TxPackets != 1 || s.RxPackets < 1 {
		t.Fatalf("metrics = %+v", s)
	}
}
