package local

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trousseau-io/trousseau/appliance/runtime"
)

func TestStartedProcessRunsInItsOwnSessionAndStopsByPID(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := proc{name: "sleeper", bin: sleep, args: []string{"300"}, pidFile: filepath.Join(dir, "pids", "s.pid"), logFile: filepath.Join(dir, "logs", "s.log")}
	pid, err := start(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if got := running(p.pidFile, sleep); got != pid {
		t.Fatalf("running = %d, want %d", got, pid)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("process session = %d, want its own (%d) so it outlives the caller", sid, pid)
	}
	if err := stop(context.Background(), p.pidFile, sleep, syscall.SIGTERM, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if alive(pid, sleep) {
		t.Error("process still alive after stop")
	}
	if _, err := os.Stat(p.pidFile); !os.IsNotExist(err) {
		t.Error("pid file left behind after stop")
	}
}

func TestStalePidFileNamingAnotherProgramIsNeverSignalled(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "etcd.pid")
	// Our own pid: alive, but not an etcd binary, as after pid reuse.
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if running(pidFile, "/some/cache/etcd") != 0 {
		t.Fatal("a pid file naming another program counts as running etcd")
	}
	if err := stop(context.Background(), pidFile, "/some/cache/etcd", syscall.SIGKILL, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Error("stale pid file not removed")
	}
}

func TestPreflightNamesTheFixForMissingTools(t *testing.T) {
	t.Setenv("TROUSSEAU_TOOLS_DIR", t.TempDir())
	for _, v := range []string{"TROUSSEAU_ETCD_BIN", "TROUSSEAU_KUBE_APISERVER_BIN", "TROUSSEAU_VAULT_BIN"} {
		t.Setenv(v, "")
	}
	err := preflight()
	if err == nil {
		t.Fatal("preflight passed with an empty tool cache")
	}
	for _, want := range []string{"etcd", "kube-apiserver", "vault", "go tool mage tools"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("preflight error %q does not mention %q", err, want)
		}
	}
}

func TestWaitHealthyReportsACancelAsInterruptedNotAsATimeout(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	l := newTestLocal(t)
	pid, err := start(proc{name: etcdName, bin: sleep, args: []string{"300"}, pidFile: l.pidFile(etcdName), logFile: l.logFile(etcdName)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	ctx, cancel := context.WithCancel(context.Background())
	checks := 0
	err = l.waitHealthy(ctx, etcdName, sleep, func(context.Context) error {
		// The person presses Ctrl-C while the component is still starting.
		if checks++; checks == 2 {
			cancel()
		}
		return errors.New("connection refused")
	})
	if !errors.Is(err, runtime.ErrInterrupted) || strings.Contains(err.Error(), "within") {
		t.Fatalf("waitHealthy after a cancel: %v, want an interruption, not a timeout", err)
	}
}

func TestStopReportsACancelAsInterrupted(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A process that ignores SIGTERM, so stop has to wait out its grace.
	p := proc{name: "stubborn", bin: "/bin/sh", args: []string{"-c", `trap "" TERM; exec ` + sleep + ` 300`},
		pidFile: filepath.Join(dir, "s.pid"), logFile: filepath.Join(dir, "s.log")}
	pid, err := start(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	deadline := time.Now().Add(5 * time.Second)
	for !alive(pid, sleep) {
		if time.Now().After(deadline) {
			t.Fatal("the stubborn process never exec'd sleep")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err = stop(ctx, p.pidFile, sleep, syscall.SIGTERM, time.Minute)
	if !errors.Is(err, runtime.ErrInterrupted) {
		t.Fatalf("stop after a cancel: %v, want an interruption", err)
	}
}

// A component is checked for liveness the moment it is started; the kernel
// can briefly show an empty cmdline then, which once made a healthy etcd look
// "exited during startup" (and left it running).
func TestAJustStartedProcessIsAlive(t *testing.T) {
	bin, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	for range 300 {
		cmd := exec.Command(bin, "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ok := alive(cmd.Process.Pid, bin)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if !ok {
			t.Fatalf("pid %d was not alive right after start", cmd.Process.Pid)
		}
	}
}
