package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Bad --disk/--share input fails with one line before /dev/kvm is needed
// (none here), and a path with options stays whole (no comma splitting).
func TestRunDeviceFlagsBadInput(t *testing.T) {
	dir := t.TempDir()
	kern := writeFile(t, "bzImage", tinyBzImage(0x20f))
	odd := writeFile(t, "odd.img", make([]byte, 1000))
	file := writeFile(t, "file", []byte("x"))
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing disk", []string{"--disk", filepath.Join(dir, "nope") + ",ro"}, 1, "no such file"},
		{"disk is a directory", []string{"--disk", dir + ",ro"}, 1, "is a directory"},
		{"unknown disk option kept whole", []string{"--disk", odd + ",bogus"}, 2, `unknown option "bogus"`},
		{"unaligned disk", []string{"--disk", odd + ",ro"}, 1, "multiple of 512"},
		{"share without tag", []string{"--share", dir}, 2, "PATH:TAG"},
		{"missing share", []string{"--share", filepath.Join(dir, "nope") + ":t,ro"}, 1, "no such file"},
		{"share is a file", []string{"--share", file + ":t,ro"}, 1, "not a directory"},
		{"read-write share", []string{"--share", dir + ":t"}, 1, "add ,ro"},
		{"tag twice", []string{"--share", dir + ":t,ro", "--share", dir + ":t,ro"}, 2, "given twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, _ := runApp(t, append([]string{"run", "--kernel", kern, "--serial", "none"}, tc.args...)...)
			if code != tc.code || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("status %d, error %q; want status %d with %q on one line", code, msg, tc.code, tc.want)
			}
		})
	}
	// The failed runs left nothing open: the images they opened are not locked.
	f, err := os.Open(odd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("%s still locked after the failed runs: %v", odd, err)
	}
}

// Valid devices are opened and checked, then the run fails only at
// /dev/kvm (absent here) or later, never at the device flags.
func TestRunDeviceFlagsAccepted(t *testing.T) {
	dir := t.TempDir()
	kern := writeFile(t, "bzImage", tinyBzImage(0x20f))
	img := writeFile(t, "disk.img", make([]byte, 8192))
	_, msg, _ := runApp(t, "run", "--kernel", kern, "--serial", "none", "--disk", img+",ro", "--disk", img+",ro,serial=x",
		"--share", dir+":ro-store,ro", "--rng=false")
	for _, bad := range []string{"--disk", "--share", "disk ", "share "} {
		if strings.Contains(msg, bad) {
			t.Fatalf("valid device flags refused: %s", msg)
		}
	}
}
