package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// proc is one supervised process: a binary, its pid file and its log file.
// Processes are detached (own session) so they outlive the mage command that
// started them, and are stopped by PID on `mage down`.
type proc struct {
	name    string // etcd, vault, trousseau, kube-apiserver
	bin     string
	args    []string
	env     []string
	pidFile string
	logFile string
}

// start launches p detached, its output appended to its log file, and writes
// its pid file. A goroutine reaps it so a crash while this process lives
// does not leave a zombie that still looks alive.
func start(p proc) (int, error) {
	if err := os.MkdirAll(filepath.Dir(p.logFile), 0o700); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(p.pidFile), 0o700); err != nil {
		return 0, err
	}
	log, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open %s log: %w", p.name, err)
	}
	defer log.Close()
	fmt.Fprintf(log, "---- %s started at %s ----\n", p.name, time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s (%s): %w", p.name, p.bin, err)
	}
	go func() { _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := os.WriteFile(p.pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return 0, fmt.Errorf("write %s: %w", p.pidFile, err)
	}
	return pid, nil
}

// readPID returns the pid in file, or 0 when there is none.
func readPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}

// alive reports whether pid runs and is the binary we started: a pid file
// from a crashed run may name a pid the system has since reused for
// something else, which must never be signalled.
func alive(pid int, bin string) bool {
	if pid <= 1 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	want := filepath.Base(bin)
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if len(argv0) == 0 {
		// Right after exec the kernel can briefly show an empty cmdline
		// (seen about once in 300 starts); the command name in stat is
		// already the new program's, truncated to 15 bytes.
		open, close := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		return open >= 0 && close > open && string(stat[open+1:close]) == want[:min(len(want), 15)]
	}
	return filepath.Base(string(argv0)) == want
}

// running returns the live pid of a component, or 0.
func running(pidFile, bin string) int {
	pid := readPID(pidFile)
	if alive(pid, bin) {
		return pid
	}
	return 0
}

// stop signals a component by its pid file and waits until it is gone:
// SIGTERM, then SIGKILL after grace. A missing or stale pid file is not an
// error; the file is removed either way.
func stop(ctx context.Context, pidFile, bin string, sig syscall.Signal, grace time.Duration) error {
	defer os.Remove(pidFile)
	pid := running(pidFile, bin)
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", filepath.Base(bin), pid, err)
	}
	// A stopped process must be continued to act on SIGTERM.
	_ = syscall.Kill(pid, syscall.SIGCONT)
	started := time.Now()
	deadline := started.Add(grace)
	for alive(pid, bin) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
			grace = 0
			if sig == syscall.SIGKILL {
				return fmt.Errorf("%s (pid %d) survived SIGKILL", filepath.Base(bin), pid)
			}
			sig = syscall.SIGKILL
		}
		select {
		case <-ctx.Done():
			return runtime.WaitEnded(ctx, "waiting for "+filepath.Base(bin)+" to stop", started, func(waited time.Duration) error {
				return fmt.Errorf("%s (pid %d) still runs after %s: %w", filepath.Base(bin), pid, waited, ctx.Err())
			})
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// tail returns the last n lines of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return "    " + strings.ReplaceAll(progress.Tail(string(b), n), "\n", "\n    ")
}
