package local

import (
	"context"
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
	for _, want := range []string{"etcd exited during startup", "address already in use", "port clash", "go tool mage demo"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "mage down") {
		t.Errorf("a start failure advises `mage down`, which discards the dev Vault and every Secret:\n%v", err)
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

func TestRestartNoticeNamesWhatRestartsAndNeverSaysDown(t *testing.T) {
	for _, tc := range []struct {
		missing []string
		want    string
	}{
		{[]string{pluginName}, "restarting only trousseau (stopped)"},
		{[]string{etcdName, pluginName, apiserverName}, "restarting only etcd, trousseau and kube-apiserver (stopped)"},
	} {
		got := restartNotice(tc.missing)
		if !strings.Contains(got, tc.want) || strings.Contains(got, "those") || strings.Contains(got, "mage down") {
			t.Errorf("restartNotice(%v) = %q, want it to contain %q", tc.missing, got, tc.want)
		}
	}
}

func TestDiscardNoticeSaysWhatIsLostWhyAndHowToAvoidIt(t *testing.T) {
	got := discardNotice("vault pid 4242 is gone, etcd data in /r/.trousseau/etcd", "/r/.trousseau/etcd", 7)
	for _, want := range []string{
		"DISCARDING 7 Secrets", "/r/.trousseau/etcd", "vault pid 4242 is gone",
		"key that encrypted those Secrets died with it", "persistent Vault", "TROUSSEAU_KIND_VAULT_MODE=persistent",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("notice lacks %q:\n%s", want, got)
		}
	}
	if lines := strings.Split(got, "\n"); !strings.HasPrefix(lines[0], "!!!!!!!!!!") || !strings.HasPrefix(lines[len(lines)-1], "!!!!!!!!!!") {
		t.Errorf("notice is not fenced to stand out:\n%s", got)
	}
	if got := discardNotice("etcd pid 1 is gone", "/r/.trousseau/etcd", -1); !strings.Contains(got, "not counted") {
		t.Errorf("uncounted notice does not say so:\n%s", got)
	}
}

func TestStatusMarksAStoppedComponentWithoutDestructiveAdvice(t *testing.T) {
	l := newTestLocal(t)
	if hasState(runtime.Options{RepoRoot: filepath.Dir(l.dir)}) {
		t.Fatal("an empty checkout has local state")
	}
	if err := os.MkdirAll(l.path("pids"), 0o700); err != nil {
		t.Fatal(err)
	}
	// The plugin was killed: its pid file names a pid that is gone.
	if err := os.WriteFile(l.pidFile(pluginName), []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !hasState(runtime.Options{RepoRoot: filepath.Dir(l.dir)}) {
		t.Error("a crashed stack's pid file does not count as local state")
	}
	st, err := l.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Components {
		if c.OK() {
			t.Errorf("%s counts as OK on a stack where nothing runs", c.Name)
		}
		if c.Name == pluginName && (!strings.Contains(c.Detail, "999999999 is gone") || strings.Contains(c.Detail, "mage down")) {
			t.Errorf("plugin detail %q: want the gone pid and no `mage down` advice", c.Detail)
		}
	}
	if !strings.Contains(st.Logs, l.path("logs")) {
		t.Errorf("status does not say where the logs are: %q", st.Logs)
	}
	err = l.requireRunning(pluginName)
	if err == nil || !strings.Contains(err.Error(), "restarts only what is missing") || !strings.Contains(err.Error(), "discard everything") {
		t.Errorf("requireRunning on a killed plugin: %v", err)
	}
}
