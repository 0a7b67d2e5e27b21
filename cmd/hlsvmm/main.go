// Command hlsvmm is a virtual machine monitor for one job: running an HLS
// origin server in a microVM with near-native networking (KVM + vhost-net).
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
)

// exitError carries a process exit status through urfave/cli without the
// library printing anything itself.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitWith wraps err so that main exits with code after printing err.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

func newApp() *cli.App {
	return &cli.App{
		Name:  "hlsvmm",
		Usage: "a KVM microVM monitor for HLS origin servers, with vhost-net networking",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
		Commands: []*cli.Command{
			// Each command lives in its own file of this package.
			networkCommand(),
			runCommand(),
			probeCommand(),
			benchCommand(),
		},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
	}
}

func main() {
	err := newApp().Run(os.Args)
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "hlsvmm: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}
