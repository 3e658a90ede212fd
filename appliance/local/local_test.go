package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

func newTestLocal(t *testing.T) *Local {
	t.Helper()
	l, err := New(runtime.Options{RepoRoot: t.TempDir(), Progress: progress.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestStartFailureQuotesTheLogAndNamesAPortClash(t *testing.T) {
	l := newTestLocal(t)
	log := l.logFile(etcdName)
	if err := os.MkdirAll(filepath.Dir(log), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, []byte("starting\nlisten tcp 127.0.0.1:2379: bind: address already in use\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := l.startFailure(etcdName, "exited during startup", errors.New("connection refused"))
	for _, want := range []string{"etcd exited during startup", "address already in use", "port clash", "go tool mage down"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%v", want, err)
		}
	}
}

func TestLeftoversExplainACrashedRun(t *testing.T) {
	l := newTestLocal(t)
	if l.leftovers() != "" {
		t.Fatal("a fresh checkout reports leftovers")
	}
	for _, d := range []string{l.path("pids"), l.path("etcd")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A pid that cannot be ours: the process is gone.
	if err := os.WriteFile(l.pidFile(vaultName), []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := l.leftovers()
	for _, want := range []string{"vault pid 999999999 is gone", "etcd data in"} {
		if !strings.Contains(got, want) {
			t.Errorf("leftovers %q lack %q", got, want)
		}
	}
}

func TestUnixSocketPathStaysUnderTheKernelLimit(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("very-long-directory-name/", 5))
	l, err := New(runtime.Options{RepoRoot: deep, Progress: progress.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if p := l.socketPath(); len(p) >= 100 {
		t.Errorf("socket path is %d bytes (%s), over the 107-byte unix socket limit margin", len(p), p)
	}
}
