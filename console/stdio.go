package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// stdioSink is the terminal hlsvmm runs in: raw mode while the VM runs,
// guest output to stdout, keyboard input to the guest, Ctrl-A x to quit.
type stdioSink struct {
	fd   int      // the caller's stdin descriptor (borrowed: the caller keeps it open)
	in   *os.File // our non-blocking duplicate of fd, read through the poller
	out  *outQueue
	quit chan struct{}
	log  *slog.Logger

	quitOnce  sync.Once
	saved     *unix.Termios // terminal state to restore, nil if not a terminal
	oldFlags  int           // fd's file status flags to restore
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func newStdioSink(stdin *os.File, stdout io.Writer, quit chan struct{}, log *slog.Logger) (*stdioSink, error) {
	if stdin == nil {
		stdin = os.Stdin
	}
	if stdout == nil {
		stdout = os.Stdout
	}
	// Not stdin.Fd(): it would switch the descriptor to blocking mode.
	rc, err := stdin.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("stdio: %w", err)
	}
	fd, flags := -1, 0
	cerr := rc.Control(func(f uintptr) {
		fd = int(f)
		flags, err = unix.FcntlInt(f, unix.F_GETFL, 0)
	})
	if err = errors.Join(cerr, err); err != nil {
		return nil, fmt.Errorf("stdio: get stdin flags: %w", err)
	}
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, fmt.Errorf("stdio: dup stdin: %w", err)
	}
	// The duplicate shares the open file description, so this makes stdin
	// non-blocking too; close puts the flags back.
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("stdio: make stdin non-blocking: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stdioSink{
		fd:       fd,
		in:       os.NewFile(uintptr(dup), "stdin"),
		quit:     quit,
		log:      log,
		oldFlags: flags,
		ctx:      ctx,
		cancel:   cancel,
	}
	s.out = newOutQueue(stdout, logBuffer, true, nil, func(err error) {
		log.Warn("console output to stdout failed", "err", err)
	})
	return s, nil
}

func (s *stdioSink) start(in Receiver) error {
	if t, err := unix.IoctlGetTermios(s.fd, unix.TCGETS); err == nil {
		saved := *t
		raw := *t
		makeRaw(&raw)
		if err := unix.IoctlSetTermios(s.fd, unix.TCSETS, &raw); err != nil {
			return fmt.Errorf("serial console: set terminal raw: %w", err)
		}
		s.saved = &saved
	} else if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("serial console: read terminal settings: %w", err)
	}
	s.wg.Add(1)
	go s.read(in)
	return nil
}

// makeRaw is cfmakeraw, keeping output post-processing (as QEMU does) so
// hlsvmm's own messages print properly.
func makeRaw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
}

func (s *stdioSink) read(in Receiver) {
	defer s.wg.Done()
	var esc escaper
	buf := make([]byte, 1024)
	for {
		n, err := s.in.Read(buf)
		r := esc.filter(buf[:n])
		if len(r.guest) > 0 && in != nil {
			if _, err := in.Receive(s.ctx, r.guest); err != nil {
				return
			}
		}
		if r.help {
			s.out.Write([]byte(escapeHelp))
		}
		if r.quit {
			s.log.Info("quit requested from the console")
			s.quitOnce.Do(func() { close(s.quit) })
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				s.log.Warn("console input failed", "err", err)
			}
			return
		}
	}
}

func (s *stdioSink) Write(p []byte) (int, error) { return s.out.Write(p) }

func (s *stdioSink) close() error {
	var errs []error
	s.closeOnce.Do(func() {
		s.cancel()
		errs = append(errs, s.in.Close()) // wakes the reader
		s.wg.Wait()
		s.out.close()
		if _, err := unix.FcntlInt(uintptr(s.fd), unix.F_SETFL, s.oldFlags); err != nil {
			errs = append(errs, fmt.Errorf("restore stdin flags: %w", err))
		}
		if s.saved != nil {
			if err := unix.IoctlSetTermios(s.fd, unix.TCSETS, s.saved); err != nil {
				errs = append(errs, fmt.Errorf("restore terminal: %w", err))
			}
		}
	})
	return errors.Join(errs...)
}

func (s *stdioSink) stats() Stats { return Stats{} }
