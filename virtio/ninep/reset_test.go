package ninep

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestResetWithRequestsInFlight resets the device while the server is
// still answering Treads, many times: the session must end cleanly (no
// panic, no race) and close every descriptor.
func TestResetWithRequestsInFlight(t *testing.T) {
	dir := t.TempDir()
	file := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{3}).Read(file) //nolint:errcheck // never fails
	if err := os.WriteFile(filepath.Join(dir, "big"), file, 0o444); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dir, 128, 40<<20)
	cfg := stressConfig{eventIdx: true, inflight: 32, minRead: 1, maxRead: 64 << 10, requests: 32}
	var d *zcDriver
	fds := openFDs(t)
	for i := range 30 {
		if i > 0 {
			h.q = h.g.NewQueue(0, 128)
			h.activate()
		}
		setupRead(t, h, DefaultMaxMessageSize, "big")
		if d == nil {
			d = newZCDriver(t, h, cfg, file, DefaultMaxMessageSize)
		} else {
			d.restart()
		}
		for range cfg.inflight {
			d.postRead()
		}
		h.d.Reset()
		h.notBroken()
	}
	// Each new queue brings its kick and call eventfds.
	if n := openFDs(t); n > fds+2*29 {
		t.Errorf("%d descriptors open after the resets, %d before", n, fds)
	}
}
