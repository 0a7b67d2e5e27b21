package vhost_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hlsvmm/hlsvmm/vhost"
	"github.com/hlsvmm/hlsvmm/vhost/vhosttest"
)

func TestBusyPollSetAtOnceAndByStart(t *testing.T) {
	r := newRig(t)
	if err := r.net.SetBusyPoll(50 * time.Microsecond); err != nil {
		t.Fatal(err)
	}
	want := []string{"SET_VRING_BUSYLOOP_TIMEOUT 0 50", "SET_VRING_BUSYLOOP_TIMEOUT 1 50"}
	if got := r.fake.Ops(); !slices.Equal(got, want) {
		t.Errorf("SetBusyPoll calls = %q, want %q", got, want)
	}
	r.fake.Reset()
	if err := r.net.Start(r.config(version1)); err != nil {
		t.Fatal(err)
	}
	// After each vring's addresses, before its eventfds and every backend.
	want = nil
	for _, op := range startSequence {
		want = append(want, op)
		switch op {
		case "SET_VRING_ADDR 0":
			want = append(want, "SET_VRING_BUSYLOOP_TIMEOUT 0 50")
		case "SET_VRING_ADDR 1":
			want = append(want, "SET_VRING_BUSYLOOP_TIMEOUT 1 50")
		}
	}
	if got := r.fake.Ops(); !slices.Equal(got, want) {
		t.Errorf("Start calls:\n got %q\nwant %q", got, want)
	}
	for i := range 2 {
		if got := r.fake.Vring(i).Busyloop; got != 50 {
			t.Errorf("vring %d busy-poll timeout %d µs, want 50", i, got)
		}
	}
	// Off again: the kernel hears 0, and Start no longer sets it.
	if err := r.net.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.net.SetBusyPoll(0); err != nil {
		t.Fatal(err)
	}
	r.fake.Reset()
	if err := r.net.Start(r.config(version1)); err != nil {
		t.Fatal(err)
	}
	if got := r.fake.Ops(); !slices.Equal(got, startSequence) {
		t.Errorf("Start calls with busy-poll off:\n got %q\nwant %q", got, startSequence)
	}
	if r.fake.Vring(0).Busyloop != 0 || r.fake.Vring(1).Busyloop != 0 {
		t.Error("busy-poll still on after SetBusyPoll(0)")
	}
}

func TestBusyPollOffByDefault(t *testing.T) {
	r := newRig(t)
	if err := r.net.Start(r.config(version1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range r.fake.Calls() {
		if c.Op == "SET_VRING_BUSYLOOP_TIMEOUT" {
			t.Fatalf("busy-poll set without SetBusyPoll: %v", c)
		}
	}
}

func TestBusyPollOldKernel(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOTTY, unix.EINVAL} {
		r := newRig(t)
		r.fake.Fail = func(c vhosttest.Call) error {
			if c.Op == "SET_VRING_BUSYLOOP_TIMEOUT" {
				return errno
			}
			return nil
		}
		err := r.net.SetBusyPoll(20 * time.Microsecond)
		if !errors.Is(err, vhost.ErrBusyPollNotSupported) || !errors.Is(err, errno) {
			t.Fatalf("%v: SetBusyPoll error %v, want ErrBusyPollNotSupported wrapping the errno", errno, err)
		}
		if !strings.Contains(err.Error(), "VHOST_SET_VRING_BUSYLOOP_TIMEOUT") {
			t.Errorf("error %q does not name the ioctl", err)
		}
		// Nothing stays set: Start does not try again.
		r.fake.Fail = nil
		r.fake.Reset()
		if err := r.net.Start(r.config(version1)); err != nil {
			t.Fatal(err)
		}
		if got := r.fake.Ops(); !slices.Equal(got, startSequence) {
			t.Errorf("Start after a failed SetBusyPoll:\n got %q\nwant %q", got, startSequence)
		}
	}
}

// A failure on the TX vring puts the RX vring back.
func TestBusyPollHalfFailure(t *testing.T) {
	r := newRig(t)
	r.fake.Fail = func(c vhosttest.Call) error {
		if c.Op == "SET_VRING_BUSYLOOP_TIMEOUT" && c.Vring == 1 {
			return unix.EFAULT
		}
		return nil
	}
	err := r.net.SetBusyPoll(10 * time.Microsecond)
	if !errors.Is(err, unix.EFAULT) || errors.Is(err, vhost.ErrBusyPollNotSupported) {
		t.Fatalf("error %v: want EFAULT, not 'kernel lacks'", err)
	}
	if !strings.Contains(err.Error(), "tx vring") {
		t.Errorf("error %q does not say which vring", err)
	}
	if got := r.fake.Vring(0).Busyloop; got != 0 {
		t.Errorf("rx vring left at %d µs", got)
	}
}

// A Start that fails setting the timeout undoes what it attached.
func TestBusyPollStartFailureUndoes(t *testing.T) {
	r := newRig(t)
	if err := r.net.SetBusyPoll(10 * time.Microsecond); err != nil {
		t.Fatal(err)
	}
	r.fake.Fail = func(c vhosttest.Call) error {
		if c.Op == "SET_VRING_BUSYLOOP_TIMEOUT" && c.Vring == 1 {
			return unix.EFAULT
		}
		return nil
	}
	err := r.net.Start(r.config(version1))
	if !errors.Is(err, unix.EFAULT) || !strings.Contains(err.Error(), "queue 1") {
		t.Fatalf("Start error %v: want EFAULT naming queue 1", err)
	}
	if vq := r.fake.Vring(0); vq.Kick != -1 || vq.Call != -1 || vq.Backend != -1 {
		t.Errorf("rx vring left attached: %+v", vq)
	}
}

func TestBusyPollInvalid(t *testing.T) {
	r := newRig(t)
	for _, d := range []time.Duration{-time.Microsecond, 1500 * time.Nanosecond, vhost.MaxBusyPoll + time.Microsecond} {
		if err := r.net.SetBusyPoll(d); err == nil || !strings.Contains(err.Error(), "whole microseconds") {
			t.Errorf("SetBusyPoll(%v) = %v, want a range error", d, err)
		}
	}
	if calls := r.fake.Calls(); len(calls) != 0 {
		t.Errorf("the kernel saw %v", calls)
	}
	if err := r.net.SetBusyPoll(vhost.MaxBusyPoll); err != nil {
		t.Errorf("SetBusyPoll(MaxBusyPoll): %v", err)
	}
	r.net.Close()
	if err := r.net.SetBusyPoll(time.Microsecond); err == nil {
		t.Error("SetBusyPoll on a closed Net succeeded")
	}
}

// The kernel's vhost-net takes the timeout (Linux 4.6 and later).
func TestRealBusyPoll(t *testing.T) {
	n := openRealNet(t)
	defer n.Close()
	if err := n.SetBusyPoll(50 * time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if err := n.SetBusyPoll(0); err != nil {
		t.Fatal(err)
	}
}
