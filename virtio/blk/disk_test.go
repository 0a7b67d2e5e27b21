package blk

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDiskSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Spec
		err  bool
	}{
		{"/var/store.img", Spec{Path: "/var/store.img"}, false},
		{"/var/store.img,ro", Spec{Path: "/var/store.img", ReadOnly: true}, false},
		{"disk.img,ro,serial=nix-store", Spec{Path: "disk.img", ReadOnly: true, Serial: "nix-store"}, false},
		{"disk.img,rw", Spec{Path: "disk.img"}, false},
		{"", Spec{}, true},
		{",ro", Spec{}, true},
		{"disk.img,readonly", Spec{}, true},
		{"disk.img,ro,", Spec{}, true},
		{"disk.img,serial=", Spec{}, true},
		{"disk.img,serial=012345678901234567890", Spec{}, true},
		{"disk.img,serial=has space", Spec{}, true},
	} {
		got, err := ParseDiskSpec(c.in)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ParseDiskSpec(%q) = %+v, %v", c.in, got, err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseDiskSpec(%q): multi-line error %q", c.in, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		spec Spec
		want error
	}{
		{"missing", Spec{Path: filepath.Join(dir, "nope.img"), ReadOnly: true}, fs.ErrNotExist},
		{"directory", Spec{Path: dir, ReadOnly: true}, ErrNotDisk},
		{"char device", Spec{Path: "/dev/null", ReadOnly: true}, ErrNotDisk},
		{"unaligned size", Spec{Path: write("odd.img", 1000), ReadOnly: true}, ErrDiskSize},
		{"empty", Spec{Path: write("empty.img", 0)}, ErrDiskSize},
		{"bad serial", Spec{Path: write("ok.img", 512), Serial: "a b"}, nil},
	} {
		d, err := Open(c.spec)
		if err == nil {
			d.Close()
			t.Errorf("%s: Open succeeded", c.name)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), c.spec.Path) {
			t.Errorf("%s: error %q should be one line naming the path", c.name, err)
		}
	}
}

func TestOpenLocking(t *testing.T) {
	path := image(t, "disk.img", 8)
	rw, err := Open(Spec{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := Open(Spec{Path: path, ReadOnly: true}); !errors.Is(err, ErrDiskInUse) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("second open of a writable disk: %v, want ErrDiskInUse", err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Read-only users share.
	a, err := Open(Spec{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(Spec{Path: path, ReadOnly: true})
	if err != nil {
		t.Fatalf("two read-only opens: %v", err)
	}
	defer b.Close()
	if a.Sectors() != 8 || a.Size() != 8*SectorSize || !a.ReadOnly() || a.Path() != path {
		t.Fatalf("disk %+v", a)
	}
	if _, err := Open(Spec{Path: path}); !errors.Is(err, ErrDiskInUse) {
		t.Fatalf("writable open of a disk shared read-only: %v", err)
	}
}

func TestNewClosesDiskOnError(t *testing.T) {
	d, err := Open(Spec{Path: image(t, "disk.img", 8)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(d, &Options{QueueSize: 100}); err == nil {
		t.Fatal("queue size 100 accepted")
	}
	if _, err := d.f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("disk not closed after New failed: %v", err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestNoFDLeak(t *testing.T) {
	path := image(t, "disk.img", 8)
	odd := filepath.Join(t.TempDir(), "odd.img")
	if err := os.WriteFile(odd, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	for range 10 {
		if d, err := Open(Spec{Path: odd}); err == nil {
			d.Close()
		}
		if d, err := Open(Spec{Path: "/dev/null", ReadOnly: true}); err == nil {
			d.Close()
		}
		d, err := Open(Spec{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(Spec{Path: path}); err == nil {
			t.Fatal("locked disk opened twice")
		}
		dev, err := New(d, nil)
		if err != nil {
			t.Fatal(err)
		}
		dev.Close()
		dev.Close()
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d descriptors open before, %d after", before, after)
	}
}
