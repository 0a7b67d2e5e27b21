package eventfd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestSignalWait(t *testing.T) {
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if set, err := e.Clear(); err != nil || set {
		t.Fatalf("Clear on fresh eventfd = %v, %v", set, err)
	}
	for i := 0; i < 3; i++ {
		if err := e.Signal(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := e.Wait()
	if err != nil || n != 3 {
		t.Fatalf("Wait = %d, %v; want 3", n, err)
	}
}

func TestCloseWakesWaiter(t *testing.T) {
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, err := e.Wait(); done <- err }()
	time.Sleep(10 * time.Millisecond)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Wait after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Wait")
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// polled reports whether fd is registered with one of the process's epoll
// instances (Go's poller): /proc/self/fdinfo of an eventpoll fd lists
// "tfd: N" for every registered fd N.
func polled(t *testing.T, fd int) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		link, err := os.Readlink("/proc/self/fd/" + ent.Name())
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + ent.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			var tfd int
			if _, err := fmt.Sscanf(line, "tfd: %d", &tfd); err == nil && tfd == fd {
				return true
			}
		}
	}
	return false
}

// An eventfd handed only to KVM or vhost-net must stay out of Go's poller:
// otherwise every kick and interrupt of the vhost datapath wakes hlsvmm.
func TestPollerOnlyAfterWait(t *testing.T) {
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Make sure the poller exists (it is created on first use).
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	if err := e.Signal(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Clear(); err != nil {
		t.Fatal(err)
	}
	if polled(t, e.Fd()) {
		t.Fatal("eventfd joined the poller before any Wait")
	}
	if err := e.Signal(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Wait(); err != nil {
		t.Fatal(err)
	}
	if !polled(t, e.Fd()) {
		t.Fatal("eventfd is not in the poller after Wait: the check above proves nothing")
	}
}

func TestPendingDoesNotClear(t *testing.T) {
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if set, err := e.Pending(); err != nil || set {
		t.Fatalf("Pending on fresh eventfd = %v, %v", set, err)
	}
	if err := e.Signal(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if set, err := e.Pending(); err != nil || !set {
			t.Fatalf("Pending after Signal = %v, %v", set, err)
		}
	}
	if set, err := e.Clear(); err != nil || !set {
		t.Fatalf("Clear after Pending = %v, %v: Pending consumed the signal", set, err)
	}
	if set, err := e.Pending(); err != nil || set {
		t.Fatalf("Pending after Clear = %v, %v", set, err)
	}
}

func TestUseAfterClose(t *testing.T) {
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Signal(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Signal after Close = %v", err)
	}
	if _, err := e.Clear(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Clear after Close = %v", err)
	}
	if _, err := e.Wait(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Wait after Close = %v", err)
	}
	if _, err := e.Pending(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Pending after Close = %v", err)
	}
	if e.Fd() != -1 {
		t.Errorf("Fd after Close = %d", e.Fd())
	}
}
