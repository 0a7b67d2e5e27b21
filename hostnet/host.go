package hostnet

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Host is the network namespace hostnet works in: the process's own (the
// production case, OpenHost) or a namespace given by handle (tests,
// OpenHostAt). It owns a netlink handle bound to that namespace.
type Host struct {
	ns     netns.NsHandle // -1: the process's namespace, no switching
	nl     *netlink.Handle
	closed bool
	// failpoint, when set (tests only), can fail a setup step by name to
	// exercise the rollback.
	failpoint func(step string) error
}

func (h *Host) fail(step string) error {
	if h.failpoint == nil {
		return nil
	}
	return h.failpoint(step)
}

// OpenHost works in the calling process's network namespace.
func OpenHost() (*Host, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, classify("open netlink handle", err)
	}
	return &Host{ns: -1, nl: h}, nil
}

// OpenHostAt works in the namespace ns. The caller keeps ownership of ns and
// must keep it open until Close.
func OpenHostAt(ns netns.NsHandle) (*Host, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, classify("open netlink handle in namespace", err)
	}
	return &Host{ns: ns, nl: h}, nil
}

// Close releases the netlink handle. It is idempotent.
func (h *Host) Close() error {
	if h.closed {
		return nil
	}
	h.closed = true
	h.nl.Close()
	return nil
}

// Do runs f on an OS thread inside the host's namespace: opening
// /dev/net/tun, /proc/sys/net files and sockets there puts them in that
// namespace for good. f runs on its own locked goroutine; if the thread
// cannot be switched back, it is not unlocked, so Go discards it.
func (h *Host) Do(f func() error) error {
	if h.ns == -1 {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- classify("enter network namespace", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it ends with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("restore network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// nft opens an nftables connection in the host's namespace. Nothing is sent
// before Flush; the caller closes it with CloseLasting.
func (h *Host) nft() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	opts = append(opts, nftables.AsLasting())
	if h.ns != -1 {
		opts = append(opts, nftables.WithNetNSFd(int(h.ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, classifyNFT("open nftables connection", err)
	}
	return c, nil
}
