package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runApp runs `hlsvmm ARGS` as main would and returns the exit status and
// the error line main would print.
func runApp(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.Run(append([]string{"hlsvmm"}, args...))
	if err == nil {
		return 0, "", out.String()
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	return code, err.Error(), out.String()
}

// tinyBzImage is a minimal but valid relocatable 64-bit bzImage (protocol
// 2.15, 4 KiB payload): it passes every check `run` makes before /dev/kvm.
func tinyBzImage(version uint16) []byte {
	const setupSects, payload = 4, 4096
	b := make([]byte, (setupSects+1)*512+payload)
	le := binary.LittleEndian
	b[0x1f1] = setupSects
	le.PutUint32(b[0x1f4:], payload/16)
	le.PutUint16(b[0x1fe:], 0xaa55)
	b[0x200], b[0x201] = 0xeb, 0x26c-0x202
	copy(b[0x202:], "HdrS")
	le.PutUint16(b[0x206:], version)
	b[0x211] = 1 // LOADED_HIGH
	le.PutUint32(b[0x214:], 0x100000)
	le.PutUint32(b[0x22c:], 0x7fffffff) // initrd_addr_max
	le.PutUint32(b[0x230:], 2<<20)      // kernel_alignment
	b[0x234] = 1                        // relocatable
	le.PutUint16(b[0x236:], 3)          // XLF_KERNEL_64 | CAN_BE_LOADED_ABOVE_4G
	le.PutUint32(b[0x238:], 2047)       // cmdline_size
	le.PutUint64(b[0x258:], 16<<20)     // pref_address
	le.PutUint32(b[0x260:], 32<<20)     // init_size
	return b
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunBadInput(t *testing.T) {
	good := writeFile(t, "bzImage", tinyBzImage(0x020f))
	elf := writeFile(t, "vmlinux", append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 4096)...))
	old := writeFile(t, "old", tinyBzImage(0x0204))
	junk := writeFile(t, "junk", bytes.Repeat([]byte("not a kernel "), 400))
	unreadable := writeFile(t, "unreadable", tinyBzImage(0x020f))
	os.Chmod(unreadable, 0)
	bigInitrd := filepath.Join(t.TempDir(), "initrd")
	f, err := os.Create(bigInitrd)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(120 << 20) // sparse: 120 MiB cannot fit in 128 MiB beside a kernel at 16 MiB
	f.Close()
	logDir := t.TempDir()
	serialLog := filepath.Join(logDir, "console.log")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	for _, tc := range []struct {
		name string
		args []string
		want string // in the error line
	}{
		{"missing kernel", []string{"--kernel", "/nonexistent/bzImage"}, "no such file"},
		{"kernel is a directory", []string{"--kernel", t.TempDir()}, "is a directory"},
		{"not a bzImage", []string{"--kernel", junk}, "not a Linux x86 bzImage"},
		{"ELF vmlinux", []string{"--kernel", elf}, "ELF"},
		{"protocol too old", []string{"--kernel", old}, "boot protocol too old"},
		{"missing initrd", []string{"--kernel", good, "--initrd", "/nonexistent/initrd"}, "--initrd /nonexistent/initrd: no such file"},
		{"initrd too large", []string{"--kernel", good, "--initrd", bigInitrd, "--mem", "128"}, "initrd does not fit"},
		{"mem below floor", []string{"--kernel", good, "--mem", "64"}, "--mem 64: at least 128 MiB"},
		{"vcpus zero", []string{"--kernel", good, "--vcpus", "0"}, "--vcpus 0"},
		{"vcpus too many", []string{"--kernel", good, "--vcpus", "100000"}, "--vcpus 100000"},
		{"bad serial", []string{"--kernel", good, "--serial", "udp:1.2.3.4:5"}, "--serial"},
		{"console port in use", []string{"--kernel", good, "--mem", "128", "--serial", "tcp:" + busy.Addr().String(),
			"--serial-log", serialLog}, "address already in use"},
		{"extra argument", []string{"--kernel", good, "surprise"}, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, _ := runApp(t, append([]string{"run"}, tc.args...)...)
			t.Logf("exit %d: %s", code, msg)
			if code == 0 {
				t.Fatalf("exit 0, want an error mentioning %q", tc.want)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
	if os.Getuid() != 0 {
		code, msg, _ := runApp(t, "run", "--kernel", unreadable)
		if code == 0 || !strings.Contains(msg, "permission denied") {
			t.Errorf("unreadable kernel: exit %d, %q", code, msg)
		}
	}
	// Nothing left behind: the console log of the failed runs is gone.
	if entries, _ := os.ReadDir(logDir); len(entries) != 0 {
		t.Errorf("failed runs left %d files in the log directory", len(entries))
	}
}

// TestRunNoUsableKVM: with valid input on a host whose KVM cannot run
// hlsvmm (none, or PVM as on the development machines), run fails with one
// line saying what is missing and removes the console log it created.
func TestRunNoUsableKVM(t *testing.T) {
	if kvmUsable() {
		t.Skip("this host has a usable /dev/kvm; the test bed covers booting (tests/vmm/boot.sh)")
	}
	good := writeFile(t, "bzImage", tinyBzImage(0x020f))
	logDir := t.TempDir()
	code, msg, _ := runApp(t, "run", "--kernel", good, "--mem", "128", "--vcpus", "1",
		"--serial", "tcp:127.0.0.1:0", "--serial-log", filepath.Join(logDir, "log"))
	if code == 0 || !strings.Contains(msg, "kvm") || strings.Contains(msg, "\n") {
		t.Fatalf("exit %d, error %q", code, msg)
	}
	if entries, _ := os.ReadDir(logDir); len(entries) != 0 {
		t.Errorf("left %d files behind", len(entries))
	}
}
