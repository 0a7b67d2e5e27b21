package main

import (
	"errors"
	"strings"
	"testing"
)

// A flag the library cannot parse is a one-line error with exit status 2,
// naming the command whose help lists the flags, and no help text.
func TestUsageErrorIsOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--vcpus", "many"}, `invalid value "many" for flag --vcpus: parse error (hlsvmm run --help lists the flags)`},
		{[]string{"bench", "hls", "--clients", "x"}, `(hlsvmm bench hls --help lists the flags)`},
		{[]string{"run", "--vcpus", "a -b"}, `invalid value "a -b" for flag --vcpus: parse error`},
		{[]string{"run", "--vcpus"}, `flag needs an argument: --vcpus`},
		{[]string{"network", "setup", "--nope"}, `flag provided but not defined: --nope (hlsvmm network setup --help lists the flags)`},
		{[]string{"--bogus"}, `flag provided but not defined: --bogus (hlsvmm --help lists the flags)`},
	} {
		app := newApp()
		var out strings.Builder
		app.Writer, app.ErrWriter = &out, &out
		err := app.Run(append([]string{"hlsvmm"}, tc.args...))
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), " --") {
			t.Errorf("%v: error %v, want exit status 2", tc.args, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q, want one line containing %q", tc.args, msg, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%v: printed %q besides the error", tc.args, out.String())
		}
	}
}
