// Command hlsvmm is a virtual machine monitor for one job: running an HLS
// origin server in a microVM with near-native networking (KVM + vhost-net).
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

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
	app := &cli.App{
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
		OnUsageError:    usageError,
	}
	var each func([]*cli.Command)
	each = func(cmds []*cli.Command) {
		for _, c := range cmds {
			c.OnUsageError = usageError
			each(c.Subcommands)
		}
	}
	each(app.Commands)
	return app
}

// usageError turns a flag the library could not parse (e.g. --vcpus many)
// into the one-line error and exit status 2 of every other bad input,
// instead of the library's message followed by the whole help text.
func usageError(c *cli.Context, err error, _ bool) error {
	name := ""
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" && l.Command.Name != c.App.Name {
			name = " " + l.Command.Name + name
		}
	}
	return exitWith(2, fmt.Errorf("%s (hlsvmm%s --help lists the flags)", twoDashes(err.Error()), name))
}

// twoDashes rewrites the flag package's messages, which name flags with one
// dash ("for flag -vcpus"), the way hlsvmm's messages and help name them.
// Only the flag name is rewritten, never the value the user gave.
func twoDashes(msg string) string {
	return strings.NewReplacer(
		"for flag -", "for flag --",
		"not defined: -", "not defined: --",
		"needs an argument: -", "needs an argument: --",
	).Replace(msg)
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
