package hostnet

import (
	"errors"
	"os"
	"testing"
	"time"

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
