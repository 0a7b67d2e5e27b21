package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrAddress is wrapped when the address to listen on is not HOST:PORT.
var ErrAddress = errors.New("invalid metrics address")

// ServerOptions tune a Server. The zero value is usable.
type ServerOptions struct {
	// Logger receives scrape and serve errors; nil means slog.Default().
	Logger *slog.Logger
}

// Server serves a Registry over HTTP: /metrics in the Prometheus
// exposition formats, a short page at /, Go's profiles under /debug/pprof/
// (goroutine?debug=2 shows where every goroutine waits) and whatever
// HandleDebug adds under /debug/.
type Server struct {
	ln   net.Listener
	mux  *http.ServeMux
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
	log  *slog.Logger

	closeOnce sync.Once
	closeErr  error
}

// Listen binds addr (HOST:PORT, e.g. "127.0.0.1:17190" or ":17190") and
// serves r on it until Close. It fails at once if the address is malformed
// (ErrAddress) or taken (errors.Is(err, syscall.EADDRINUSE)), so a run can refuse to
// start before it boots anything.
func Listen(addr string, r *Registry, opts *ServerOptions) (*Server, error) {
	if r == nil {
		return nil, errors.New("metrics: listen: nil registry")
	}
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if _, port, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w %q: want HOST:PORT (%v)", ErrAddress, addr, err)
	} else if port == "" {
		return nil, fmt.Errorf("%w %q: no port", ErrAddress, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	s := &Server{ln: ln, done: make(chan struct{}), log: o.Logger}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:      scrapeLog{o.Logger},
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       10 * time.Second,
	}))
	mux.HandleFunc("GET /{$}", index)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux = mux
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return s, nil
}

// HandleDebug serves state() as indented JSON at /debug/NAME, e.g. the
// virtio devices' queues. NAME is a single path segment; call it once per
// name.
func (s *Server) HandleDebug(name string, state func() any) {
	s.mux.HandleFunc("GET /debug/"+name, func(w http.ResponseWriter, _ *http.Request) {
		b, err := json.MarshalIndent(state(), "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
}

// Addr is the address the server listens on (with the port the kernel
// chose if addr asked for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops serving: the listener and open connections are closed and
// Close returns once the server goroutine has ended. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if err := s.srv.Close(); err != nil {
			s.closeErr = fmt.Errorf("metrics: close server on %s: %w", s.ln.Addr(), err)
		}
		<-s.done
	})
	return s.closeErr
}

func index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, `<!doctype html>
<title>hlsvmm</title>
<h1>hlsvmm</h1>
<p>Prometheus metrics of this VM: <a href="/metrics">/metrics</a></p>
<p>Its virtio devices and queues: <a href="/debug/virtio">/debug/virtio</a></p>
<p>Go profiles of hlsvmm: <a href="/debug/pprof/">/debug/pprof/</a></p>
`)
}

// scrapeLog passes promhttp's gathering errors to slog.
type scrapeLog struct{ log *slog.Logger }

func (l scrapeLog) Println(v ...any) { l.log.Warn("metrics scrape", "err", fmt.Sprint(v...)) }
