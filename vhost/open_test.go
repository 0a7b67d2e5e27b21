package vhost

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestOpenMissingDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vhost-net")
	_, err := openKernel(path)
	if !errors.Is(err, ErrNotAvailable) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("open %s: %v, want ErrNotAvailable and ENOENT", path, err)
	}
	if !strings.Contains(err.Error(), "modprobe vhost_net") {
		t.Errorf("message %q does not say how to load the module", err)
	}
}

func TestOpenHints(t *testing.T) {
	for _, errno := range []error{unix.EACCES, unix.EPERM} {
		h := openHint(errno)
		if !strings.Contains(h, "setfacl") || !strings.Contains(h, "GROUP=") {
			t.Errorf("hint for %v = %q, want a group and an ACL", errno, h)
		}
		if strings.Contains(h, "666") {
			t.Errorf("hint for %v suggests world-writable: %q", errno, h)
		}
	}
	for _, errno := range []error{unix.ENOENT, unix.ENODEV, unix.ENXIO} {
		if h := openHint(errno); !strings.Contains(h, "modprobe vhost_net") {
			t.Errorf("hint for %v = %q", errno, h)
		}
	}
}

// A descriptor that is not vhost-net (/dev/null: SET_OWNER is ENOTTY) is
// closed again when NewNet fails.
func TestNewNetClosesOnFailure(t *testing.T) {
	before := openFDs(t)
	d, err := openKernel("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewNet(d)
	if !errors.Is(err, unix.ENOTTY) || !strings.Contains(err.Error(), "set vhost-net owner") {
		t.Errorf("NewNet on /dev/null: %v, want set owner failing with ENOTTY", err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close after close: %v", err)
	}
	if err := d.SetOwner(); !errors.Is(err, unix.EBADF) {
		t.Errorf("ioctl after Close: %v, want EBADF", err)
	}
}
