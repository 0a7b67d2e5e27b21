// Package console connects the guest's serial port to the outside world:
// a TCP server (one client at a time, a new client takes over), the
// terminal hlsvmm runs in, or nothing — plus a log file that keeps all
// output whatever the sink.
//
// Guest output is written to the Console (an io.Writer, typically the
// UART's output); it never blocks on a slow TCP client. Client input is handed
// to a Receiver (the UART), which may block to push back on the client.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
)

// Receiver takes input for the guest; it blocks while the guest is not
// reading and returns early when ctx ends. *serial.UART satisfies it.
type Receiver interface {
	Receive(ctx context.Context, p []byte) (int, error)
}

// Options tunes a Console; the zero value (or nil) means defaults.
type Options struct {
	// LogPath, if set, receives all guest output (created or truncated,
	// mode 0600: the console may show secrets).
	LogPath string
	// Logger reports clients and errors; nil means slog.Default().
	Logger *slog.Logger
	// Stdin and Stdout replace os.Stdin and os.Stdout for KindStdio.
	Stdin  *os.File
	Stdout io.Writer
	// ClientBuffer bounds the output queued for a TCP client that reads
	// slowly; beyond it output is dropped (and counted). 0 means 256 KiB.
	ClientBuffer int
}

// Stats are the console's counters.
type Stats struct {
	// Connections is the number of TCP clients accepted so far.
	Connections uint64
	// Connected reports whether a client is attached now.
	Connected bool
	// Dropped counts output bytes a client missed because it read too slowly.
	Dropped uint64
}

// logBuffer bounds output queued for the log file; past it the guest waits.
const logBuffer = 1 << 20

// sink is one kind of interactive console.
type sink interface {
	start(in Receiver) error
	io.Writer
	close() error
	stats() Stats
}

// Console is a serial console: sink plus log.
type Console struct {
	spec Spec
	sink sink
	addr net.Addr
	quit chan struct{}

	logFile *os.File
	logQ    *outQueue

	startOnce sync.Once
	closeOnce sync.Once
	closeErr  error
}

// New sets up the console described by spec. For TCP it listens before
// returning, so a busy port is reported before any VM exists. Nothing is
// left open when it fails.
func New(spec Spec, opts *Options) (*Console, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	log := o.Logger.With("console", spec.String())
	c := &Console{spec: spec, quit: make(chan struct{})}

	switch spec.Kind {
	case KindTCP:
		s, err := newTCPSink(spec.Addr, o.ClientBuffer, log)
		if err != nil {
			return nil, fmt.Errorf("serial console: %w", err)
		}
		c.sink, c.addr = s, s.ln.Addr()
	case KindStdio:
		s, err := newStdioSink(o.Stdin, o.Stdout, c.quit, log)
		if err != nil {
			return nil, fmt.Errorf("serial console: %w", err)
		}
		c.sink = s
	case KindNone:
		c.sink = noneSink{}
	default:
		return nil, fmt.Errorf("serial console: unknown kind %d", spec.Kind)
	}

	if o.LogPath != "" {
		f, err := os.OpenFile(o.LogPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			c.sink.close()
			return nil, fmt.Errorf("serial console: open log: %w", err)
		}
		c.logFile = f
		c.logQ = newOutQueue(f, logBuffer, true, nil, func(err error) {
			log.Error("serial log write failed; log stops here", "path", o.LogPath, "err", err)
		})
	}
	return c, nil
}

// Start begins passing client input to in (and, for stdio, puts the
// terminal in raw mode). Call it once the guest's UART exists; TCP clients
// that connect earlier wait in the listen backlog.
func (c *Console) Start(in Receiver) error {
	err := errors.New("serial console: already started")
	c.startOnce.Do(func() { err = c.sink.start(in) })
	return err
}

// Write takes guest output and always reports success. A slow or absent
// TCP client never stalls it (the client misses output instead, counted
// in Stats.Dropped); the log file and the terminal (stdio) get every byte
// and make Write wait only when more than 1 MiB behind.
func (c *Console) Write(p []byte) (int, error) {
	if c.logQ != nil {
		c.logQ.Write(p)
	}
	return c.sink.Write(p)
}

// Addr is the listening address of a TCP console (useful with port 0),
// nil for other kinds.
func (c *Console) Addr() net.Addr { return c.addr }

// Spec returns the spec the console was made from.
func (c *Console) Spec() Spec { return c.spec }

// Quit is closed when the user asks to end the VM from the console
// (Ctrl-A x on stdio). It is never closed for other kinds.
func (c *Console) Quit() <-chan struct{} { return c.quit }

// Stats returns the console's counters.
func (c *Console) Stats() Stats { return c.sink.stats() }

// Close disconnects clients, closes the listener, restores the terminal
// and flushes and closes the log. It is idempotent.
func (c *Console) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.sink.close()
		if c.logQ != nil {
			c.logQ.close()
			if err := c.logFile.Close(); err != nil && c.closeErr == nil {
				c.closeErr = fmt.Errorf("serial console: close log: %w", err)
			}
		}
	})
	return c.closeErr
}

// noneSink discards output and has no input.
type noneSink struct{}

func (noneSink) start(Receiver) error        { return nil }
func (noneSink) Write(p []byte) (int, error) { return len(p), nil }
func (noneSink) close() error                { return nil }
func (noneSink) stats() Stats                { return Stats{} }
