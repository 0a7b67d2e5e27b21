package matrix

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// shLauncher runs a shell script as the VMM: /bin/sh -c SCRIPT sh BASE... ROW-FLAGS...
func shLauncher(script string) *ExecLauncher {
	return &ExecLauncher{Path: "/bin/sh", Args: []string{"-c", script, "sh", "run", "--kernel=k"}, StopTimeout: 2 * time.Second}
}

func launch(t *testing.T, l *ExecLauncher, row Row) VM {
	t.Helper()
	vm, err := l.Launch(row)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop() })
	return vm
}

func waitExit(t *testing.T, vm VM) {
	t.Helper()
	select {
	case <-vm.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not end")
	}
}

// waitOutput waits until the process has written a line starting with prefix.
func waitOutput(t *testing.T, vm VM, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range vm.Output() {
			if strings.HasPrefix(l, prefix) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no output line %q: %q", prefix, vm.Output())
}

func TestExecLauncherArgsAndExit(t *testing.T) {
	row := Spec{{"vhost", []string{"off"}}, {"busy-poll", []string{"-1"}}, {"offload", []string{"csum,tso4"}}}.Rows()[0]
	vm := launch(t, shLauncher(`for a; do echo "arg $a"; done; echo "to stderr" >&2; printf unterminated; exit 3`), row)
	waitExit(t, vm)
	want := []string{"arg run", "arg --kernel=k", "arg --vhost=off", "arg --busy-poll=-1", "arg --offload=csum,tso4", "to stderr", "unterminated"}
	if got := vm.Output(); !reflect.DeepEqual(got, want) {
		t.Errorf("output %q, want %q", got, want)
	}
	if got := vm.ExitStatus(); got != "exit status 3" {
		t.Errorf("exit status %q", got)
	}
	if err := vm.Stop(); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
}

func TestExecLauncherStopsWithSIGTERM(t *testing.T) {
	// The trap runs once the current short sleep ends.
	vm := launch(t, shLauncher(`trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 0.05; done`), Row{Index: 1})
	waitOutput(t, vm, "up")
	// Its own process group: a Ctrl-C at the terminal does not reach it.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", vm.PID()))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if pgrp := f[2]; pgrp != fmt.Sprint(vm.PID()) {
		t.Errorf("process group %s, want its own (%d)", pgrp, vm.PID())
	}
	select {
	case <-vm.Exited():
		t.Fatal("ended before Stop")
	default:
	}
	if vm.ExitStatus() != "" {
		t.Errorf("exit status %q while it runs", vm.ExitStatus())
	}
	start := time.Now()
	if err := vm.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Stop took %v: SIGTERM not delivered?", d)
	}
	if got := vm.Output(); got[len(got)-1] != "got TERM" || vm.ExitStatus() != "exit status 0" {
		t.Errorf("output %q, exit %q", got, vm.ExitStatus())
	}
}

func TestExecLauncherKillsAfterTimeout(t *testing.T) {
	l := shLauncher(`trap '' TERM; echo up; while :; do sleep 0.05; done`)
	l.StopTimeout = 300 * time.Millisecond
	vm := launch(t, l, Row{Index: 1})
	waitOutput(t, vm, "up")
	start := time.Now()
	err := vm.Stop()
	if !errors.Is(err, ErrKilled) || vm.ExitStatus() != "signal: killed" {
		t.Errorf("Stop: %v, exit %q; want ErrKilled, signal: killed", err, vm.ExitStatus())
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("killed after %v, before the stop timeout", d)
	}
	if err2 := vm.Stop(); err2 != err {
		t.Errorf("second Stop: %v, want the first's %v", err2, err)
	}
}

func TestExecLauncherLogDirAndTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	l := shLauncher(`i=0; while [ $i -lt 50 ]; do echo "line $i"; i=$((i+1)); done; for a; do :; done; echo "last $a"`)
	l.LogDir, l.TailLines = dir, 3
	vm := launch(t, l, Row{Index: 7, Settings: []Setting{{"vhost", "on"}}})
	waitExit(t, vm)
	console := filepath.Join(dir, "row-7-console.log")
	if got, want := vm.Output(), []string{"line 48", "line 49", "last --serial-log=" + console}; !reflect.DeepEqual(got, want) {
		t.Errorf("tail %q, want %q", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "row-7.log"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); len(lines) != 51 || lines[0] != "line 0" {
		t.Errorf("log has %d lines, first %q", len(lines), lines[0])
	}
}

func TestExecLauncherStartFails(t *testing.T) {
	l := &ExecLauncher{Path: filepath.Join(t.TempDir(), "no-such-hlsvmm")}
	if vm, err := l.Launch(Row{Index: 1}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Launch of a missing binary: %v, %v", vm, err)
	}
}

func TestTailWriter(t *testing.T) {
	w := &tailWriter{max: 2}
	w.Write([]byte("a\nb"))
	w.Write([]byte("c\n\nd"))
	if got := w.lines(); !reflect.DeepEqual(got, []string{"", "d"}) {
		t.Errorf("lines %q", got)
	}
	w = &tailWriter{max: 5}
	long := strings.Repeat("x", 3*maxLineBytes)
	w.Write([]byte(long[:maxLineBytes/2]))
	w.Write([]byte(long + "\nok\n"))
	if got := w.lines(); len(got) != 2 || len(got[0]) != maxLineBytes || got[1] != "ok" {
		t.Errorf("long line kept as %d bytes, then %q", len(got[0]), got[1:])
	}
}
