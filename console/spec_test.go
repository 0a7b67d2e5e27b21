package console

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	good := map[string]Spec{
		DefaultSpec:           {Kind: KindTCP, Addr: "127.0.0.1:17022"},
		"tcp:0.0.0.0:17022":   {Kind: KindTCP, Addr: "0.0.0.0:17022"},
		"tcp:[::1]:0":         {Kind: KindTCP, Addr: "[::1]:0"},
		"tcp:localhost:00080": {Kind: KindTCP, Addr: "localhost:80"},
		"stdio":               {Kind: KindStdio},
		"none":                {Kind: KindNone},
	}
	for in, want := range good {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if again, err := ParseSpec(got.String()); err != nil || again != got {
			t.Errorf("ParseSpec(%q.String()) = %+v, %v", in, again, err)
		}
	}
	bad := []string{"", "tcp", "tcp:", "tcp:17022", "tcp::17022", "tcp:127.0.0.1:", "tcp:127.0.0.1:65536",
		"tcp:127.0.0.1:-1", "tcp:127.0.0.1:http", "udp:127.0.0.1:1", "file:/tmp/x", "stdio:", "None"}
	for _, in := range bad {
		_, err := ParseSpec(in)
		if err == nil {
			t.Errorf("ParseSpec(%q) succeeded", in)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "serial") {
			t.Errorf("ParseSpec(%q) error is not one clear line: %q", in, msg)
		}
	}
}
