package console

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sinkReceiver collects guest input, like a UART whose FIFO never fills.
type sinkReceiver struct {
	mu  sync.Mutex
	buf bytes.Buffer
	got chan struct{}
}

func newSinkReceiver() *sinkReceiver { return &sinkReceiver{got: make(chan struct{}, 1)} }

func (r *sinkReceiver) Receive(ctx context.Context, p []byte) (int, error) {
	r.mu.Lock()
	r.buf.Write(p)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
	return len(p), nil
}

// waitFor waits until the received input equals want.
func (r *sinkReceiver) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		s := r.buf.String()
		r.mu.Unlock()
		if s == want {
			return
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("guest input = %q, want %q", s, want)
		}
	}
}

// stuckReceiver is a guest that never reads its UART.
type stuckReceiver struct{}

func (stuckReceiver) Receive(ctx context.Context, p []byte) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

func newTCP(t *testing.T, opts *Options) *Console {
	t.Helper()
	c, err := New(Spec{Kind: KindTCP, Addr: "127.0.0.1:0"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dial connects and waits until the console has made it the live client.
func dial(t *testing.T, c *Console) (net.Conn, *bufio.Reader) {
	t.Helper()
	want := c.Stats().Connections + 1
	conn, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for deadline := time.Now().Add(10 * time.Second); c.Stats().Connections < want; {
		if time.Now().After(deadline) {
			t.Fatal("console did not accept the client")
		}
		time.Sleep(time.Millisecond)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn)
}

func expect(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil || string(got) != want {
		t.Fatalf("client read %q, %v; want %q", got, err, want)
	}
}

func TestTCPConsole(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "serial.log")
	c := newTCP(t, &Options{LogPath: logPath})
	rcv := newSinkReceiver()
	if err := c.Start(rcv); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(rcv); err == nil {
		t.Fatal("second Start succeeded")
	}

	c.Write([]byte("early boot\r\n")) // nobody connected: log only

	conn1, r1 := dial(t, c)
	c.Write([]byte("login: "))
	expect(t, r1, "login: ") // a late client sees live output, not the backlog
	conn1.Write([]byte("root\r"))
	rcv.waitFor(t, "root\r")

	_, r2 := dial(t, c)
	line, err := r1.ReadString('\n') // "\r\n"
	if err == nil {
		line, err = r1.ReadString('\n')
	}
	if err != nil || !strings.Contains(line, "taken over") {
		t.Fatalf("first client got %q, %v; want a takeover notice", line, err)
	}
	if _, err := r1.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("first client still connected after takeover (%v)", err)
	}
	c.Write([]byte("Password: "))
	expect(t, r2, "Password: ")

	st := c.Stats()
	if st.Connections != 2 || !st.Connected {
		t.Fatalf("stats = %+v", st)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", c.Addr().String()); err == nil {
		t.Fatal("listener still open after Close")
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(log) != "early boot\r\nlogin: Password: " {
		t.Fatalf("log = %q", log)
	}
}

func TestTCPPortInUse(t *testing.T) {
	c := newTCP(t, nil)
	addr := c.Addr().String()
	logPath := filepath.Join(t.TempDir(), "serial.log")
	_, err := New(Spec{Kind: KindTCP, Addr: addr}, &Options{LogPath: logPath})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("New on a busy port = %v, want EADDRINUSE", err)
	}
	if !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %q does not name %s on one line", err, addr)
	}
	if _, err := os.Stat(logPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("failed New left a log file behind")
	}
}

// A client that does not read must not stall guest output; what it
// misses is counted.
func TestTCPSlowClientDoesNotBlockGuest(t *testing.T) {
	c := newTCP(t, &Options{ClientBuffer: 4096})
	c.Start(nil)
	dial(t, c)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range 256 { // 16 MiB, far beyond socket buffers
		c.Write(chunk)
	}
	if c.Stats().Dropped == 0 {
		t.Fatal("no output dropped for a client that never reads")
	}
}

// A guest that never reads input must not keep a replaced client's
// goroutine or Close waiting.
func TestTCPStuckGuestInput(t *testing.T) {
	c := newTCP(t, nil)
	c.Start(stuckReceiver{})
	conn, _ := dial(t, c)
	conn.Write([]byte("typed while the guest is busy"))
	dial(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNoneConsoleLogs(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "serial.log")
	c, err := New(Spec{Kind: KindNone}, &Options{LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(nil)
	c.Write([]byte("hello"))
	c.Close()
	if b, _ := os.ReadFile(logPath); string(b) != "hello" {
		t.Fatalf("log = %q", b)
	}
	if c.Addr() != nil {
		t.Fatal("none console has an address")
	}
}

func TestLogOpenFailure(t *testing.T) {
	_, err := New(Spec{Kind: KindTCP, Addr: "127.0.0.1:0"}, &Options{LogPath: filepath.Join(t.TempDir(), "no", "such", "dir")})
	if err == nil || !strings.Contains(err.Error(), "open log") {
		t.Fatalf("New with an unwritable log = %v", err)
	}
}

func TestStdioConsole(t *testing.T) {
	// A blocking pipe, like a terminal's stdin: the console makes it
	// non-blocking while it runs and must put it back.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	inR, inW := os.NewFile(uintptr(p[0]), "stdin"), os.NewFile(uintptr(p[1]), "stdin-writer")
	defer inR.Close()
	defer inW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	defer outW.Close()

	flagsBefore, err := fcntlFlags(inR)
	if err != nil || flagsBefore&unix.O_NONBLOCK != 0 {
		t.Fatalf("test pipe flags %#x, %v", flagsBefore, err)
	}
	c, err := New(Spec{Kind: KindStdio}, &Options{Stdin: inR, Stdout: outW})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rcv := newSinkReceiver()
	if err := c.Start(rcv); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("guest says hi"))
	got := make([]byte, len("guest says hi"))
	if _, err := io.ReadFull(outR, got); err != nil || string(got) != "guest says hi" {
		t.Fatalf("stdout = %q, %v", got, err)
	}
	inW.Write([]byte("ab\x01\x01c"))
	rcv.waitFor(t, "ab\x01c")
	select {
	case <-c.Quit():
		t.Fatal("quit before C-a x")
	default:
	}
	inW.Write([]byte("\x01xignored"))
	select {
	case <-c.Quit():
	case <-time.After(10 * time.Second):
		t.Fatal("C-a x did not request quit")
	}
	rcv.waitFor(t, "ab\x01c")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if flags, err := fcntlFlags(inR); err != nil || flags != flagsBefore {
		t.Fatalf("stdin flags %#x after Close, %#x before (%v)", flags, flagsBefore, err)
	}
}

// A stdio console whose input never ends must still close promptly.
func TestStdioCloseWhileReading(t *testing.T) {
	inR, inW, _ := os.Pipe()
	defer inR.Close()
	defer inW.Close()
	c, err := New(Spec{Kind: KindStdio}, &Options{Stdin: inR, Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	c.Start(newSinkReceiver())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
