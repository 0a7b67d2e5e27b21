package console

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	defaultClientBuffer = 256 << 10
	// flushTimeout bounds how long a departing client may take to read
	// its last output (such as the takeover notice).
	flushTimeout = time.Second
)

// tcpSink serves the console to one TCP client at a time; a new client
// takes the console over and the previous one is told and disconnected.
type tcpSink struct {
	ln      net.Listener
	bufSize int
	log     *slog.Logger

	connections atomic.Uint64
	dropped     atomic.Uint64

	mu     sync.Mutex
	cur    *tcpClient
	closed bool
	wg     sync.WaitGroup
}

func newTCPSink(addr string, bufSize int, log *slog.Logger) (*tcpSink, error) {
	if bufSize <= 0 {
		bufSize = defaultClientBuffer
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err // net.OpError names the address: "listen tcp 127.0.0.1:17022: bind: address already in use"
	}
	return &tcpSink{ln: ln, bufSize: bufSize, log: log}, nil
}

func (s *tcpSink) start(in Receiver) error {
	s.wg.Add(1)
	go s.accept(in)
	return nil
}

func (s *tcpSink) accept(in Receiver) {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("console accept failed", "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. out of fds; do not spin
			continue
		}
		c := s.newClient(conn)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.close("")
			return
		}
		old := s.cur
		s.cur = c
		s.wg.Add(1)
		s.mu.Unlock()
		s.connections.Add(1)
		s.log.Info("console client connected", "remote", conn.RemoteAddr().String())
		if old != nil {
			s.log.Info("console client replaced", "remote", old.conn.RemoteAddr().String())
			go old.close("\r\nhlsvmm: console taken over by " + conn.RemoteAddr().String() + "\r\n")
		}
		go s.serve(c, in)
	}
}

// serve copies the client's input to the guest until either side ends.
func (s *tcpSink) serve(c *tcpClient, in Receiver) {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := c.conn.Read(buf)
		if n > 0 && in != nil {
			if _, rerr := in.Receive(c.ctx, buf[:n]); rerr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	s.mu.Lock()
	if s.cur == c {
		s.cur = nil
		s.log.Info("console client disconnected", "remote", c.conn.RemoteAddr().String())
	}
	s.mu.Unlock()
	c.close("")
}

func (s *tcpSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c != nil {
		c.out.Write(p)
	}
	return len(p), nil
}

func (s *tcpSink) close() error {
	s.mu.Lock()
	s.closed = true
	c := s.cur
	s.cur = nil
	s.mu.Unlock()
	err := s.ln.Close()
	if c != nil {
		c.close("\r\nhlsvmm: console closed\r\n")
	}
	s.wg.Wait()
	return err
}

func (s *tcpSink) stats() Stats {
	s.mu.Lock()
	connected := s.cur != nil
	s.mu.Unlock()
	return Stats{Connections: s.connections.Load(), Connected: connected, Dropped: s.dropped.Load()}
}

// tcpClient is one connection and the queue feeding it guest output.
type tcpClient struct {
	conn   net.Conn
	out    *outQueue
	ctx    context.Context // ends when the client is closed: abandons blocked input
	cancel context.CancelFunc
	once   sync.Once
}

func (s *tcpSink) newClient(conn net.Conn) *tcpClient {
	ctx, cancel := context.WithCancel(context.Background())
	c := &tcpClient{conn: conn, ctx: ctx, cancel: cancel}
	c.out = newOutQueue(conn, s.bufSize, false, &s.dropped, func(err error) {
		conn.Close() // a dead writer ends the reader too
	})
	return c
}

// close sends notice (if any), gives the client a moment to read what is
// queued, and disconnects it. Only the first call acts.
func (c *tcpClient) close(notice string) {
	c.once.Do(func() {
		c.cancel()
		if notice != "" {
			c.out.Write([]byte(notice))
		}
		c.conn.SetWriteDeadline(time.Now().Add(flushTimeout))
		c.out.close()
		c.conn.Close()
	})
}
