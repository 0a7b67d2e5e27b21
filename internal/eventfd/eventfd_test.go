package eventfd

import (
	"errors"
	"os"
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
