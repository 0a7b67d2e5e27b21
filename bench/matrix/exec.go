package matrix

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Defaults of ExecLauncher's zero fields.
const (
	DefaultStopTimeout = time.Minute
	DefaultTailLines   = 20
	maxLineBytes       = 1024
)

// ErrKilled says a VMM did not end within the stop timeout after SIGTERM and was killed: it
// may have left its host network behind (the next `hlsvmm run` adopts it).
var ErrKilled = errors.New("killed")

// ExecLauncher starts each row as a child process: Path with Args, then the row's flags.
// `bench --matrix` makes Path its own executable and Args "run" and the base flags.
type ExecLauncher struct {
	Path        string
	Args        []string
	LogDir      string        // if set: DIR/row-N.log gets the child's output, and the child --serial-log=DIR/row-N-console.log
	StopTimeout time.Duration // SIGTERM to SIGKILL
	TailLines   int           // output lines kept for failed rows
}

// Launch starts the row's process in its own process group (a Ctrl-C on the terminal reaches
// the matrix, which stops the VMM itself, not the VMM directly), with SIGTERM as its
// parent-death signal so that a matrix that dies does not leave a VM running (Linux sends it
// when the thread that started the child ends: Go ends threads only for goroutines that exit
// locked to one, which this package does not do).
func (l *ExecLauncher) Launch(row Row) (VM, error) {
	args := append(append([]string(nil), l.Args...), row.Args()...)
	tail := &tailWriter{max: l.TailLines}
	if tail.max <= 0 {
		tail.max = DefaultTailLines
	}
	var out io.Writer = tail
	var logFile *os.File
	if l.LogDir != "" {
		if err := os.MkdirAll(l.LogDir, 0o755); err != nil {
			return nil, fmt.Errorf("create the log directory: %w", err)
		}
		base := filepath.Join(l.LogDir, fmt.Sprintf("row-%d", row.Index))
		f, err := os.Create(base + ".log")
		if err != nil {
			return nil, fmt.Errorf("create the VMM log: %w", err)
		}
		logFile, out = f, io.MultiWriter(f, tail)
		args = append(args, "--serial-log="+base+"-console.log")
	}
	cmd := exec.Command(l.Path, args...)
	cmd.Stdout, cmd.Stderr = out, out // one pipe: the lines keep their order
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.WaitDelay = 5 * time.Second // a grandchild holding the pipe does not block Wait forever
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("start %s: %w", l.Path, err)
	}
	p := &process{cmd: cmd, tail: tail, exited: make(chan struct{}), stopTimeout: l.StopTimeout}
	if p.stopTimeout <= 0 {
		p.stopTimeout = DefaultStopTimeout
	}
	go func() {
		err := cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		p.mu.Lock()
		switch {
		case cmd.ProcessState != nil:
			p.status = cmd.ProcessState.String()
		default:
			p.status = err.Error()
		}
		p.mu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

// process is a VM started by ExecLauncher.
type process struct {
	cmd         *exec.Cmd
	tail        *tailWriter
	exited      chan struct{}
	stopTimeout time.Duration

	mu      sync.Mutex
	status  string
	stopped bool
	stopErr error
}

func (p *process) PID() int                { return p.cmd.Process.Pid }
func (p *process) Exited() <-chan struct{} { return p.exited }
func (p *process) Output() []string        { return p.tail.lines() }

func (p *process) ExitStatus() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Stop sends SIGTERM (through os.Process, which cannot hit a reused PID) and waits
// StopTimeout, then SIGKILL.
func (p *process) Stop() error {
	p.mu.Lock()
	if p.stopped {
		defer p.mu.Unlock()
		return p.stopErr
	}
	p.stopped = true
	p.mu.Unlock()
	err := p.stop()
	p.mu.Lock()
	p.stopErr = err
	p.mu.Unlock()
	return err
}

func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(p.stopTimeout):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("not ended %v after SIGTERM, and SIGKILL: %w", p.stopTimeout, err)
	}
	select {
	case <-p.exited:
		return fmt.Errorf("not ended %v after SIGTERM: %w", p.stopTimeout, ErrKilled)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("not ended %v after SIGTERM nor 30 s after SIGKILL", p.stopTimeout)
	}
}

// tailWriter keeps the last max lines written to it, each cut at maxLineBytes.
type tailWriter struct {
	max int

	mu      sync.Mutex
	done    []string
	partial []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLineBytes - len(t.partial); room > 0 {
			t.partial = append(t.partial, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			break
		}
		t.push(string(t.partial))
		t.partial = t.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (t *tailWriter) push(line string) {
	t.done = append(t.done, line)
	if len(t.done) > t.max {
		t.done = append(t.done[:0], t.done[len(t.done)-t.max:]...)
	}
}

// lines are the last lines, a final unterminated one included.
func (t *tailWriter) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.done...)
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
		if len(out) > t.max {
			out = out[1:]
		}
	}
	return out
}
