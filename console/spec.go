package console

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultSpec is the console used when --serial is not given: a TCP server
// on loopback only. Binding every interface must be asked for explicitly.
const DefaultSpec = "tcp:127.0.0.1:17022"

// Kind is the sink the console's clients use.
type Kind int

const (
	// KindNone has no interactive sink; output still goes to the log.
	KindNone Kind = iota
	// KindTCP serves the console to one TCP client at a time.
	KindTCP
	// KindStdio uses the terminal hlsvmm runs in, in raw mode.
	KindStdio
)

// Spec is a parsed --serial value.
type Spec struct {
	Kind Kind
	// Addr is host:port to listen on, for KindTCP.
	Addr string
}

// String returns the spec in the form ParseSpec accepts.
func (s Spec) String() string {
	switch s.Kind {
	case KindTCP:
		return "tcp:" + s.Addr
	case KindStdio:
		return "stdio"
	default:
		return "none"
	}
}

// ParseSpec parses a --serial value: "tcp:HOST:PORT" (IPv6 hosts in
// brackets), "stdio" or "none". Errors are one line naming the problem.
func ParseSpec(s string) (Spec, error) {
	switch {
	case s == "stdio":
		return Spec{Kind: KindStdio}, nil
	case s == "none":
		return Spec{Kind: KindNone}, nil
	case strings.HasPrefix(s, "tcp:"):
		addr := strings.TrimPrefix(s, "tcp:")
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return Spec{}, fmt.Errorf("serial %q: want tcp:HOST:PORT (e.g. %s)", s, DefaultSpec)
		}
		if host == "" {
			return Spec{}, fmt.Errorf("serial %q: host is empty; use 127.0.0.1 for this machine only or 0.0.0.0 for every interface", s)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return Spec{}, fmt.Errorf("serial %q: port %q is not a number from 0 to 65535", s, port)
		}
		return Spec{Kind: KindTCP, Addr: net.JoinHostPort(host, strconv.FormatUint(p, 10))}, nil
	default:
		return Spec{}, fmt.Errorf("serial %q: unknown console; want tcp:HOST:PORT, stdio or none", s)
	}
}
