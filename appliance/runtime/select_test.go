package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trousseau-io/trousseau/appliance/progress"
)

func TestChooseFollowsEnvThenExistingStackThenDockerEngine(t *testing.T) {
	up := func() error { return nil }
	down := func() error { return errors.New("dial unix /var/run/docker.sock: connect: no such file or directory") }
	pingFails := func() error { t.Error("probed Docker although the choice was already made"); return nil }
	for _, c := range []struct {
		env      string
		existing []string
		ping     func() error
		want     string
		why      string
		detail   []string
	}{
		{"", nil, up, "kind", "a Docker engine answered", []string{EnvRuntime + "=local"}},
		// The dial error is detail (mage -v), not the one line everyone reads.
		{"", nil, down, "local", "no Docker engine", []string{"no such file", EnvRuntime + "=kind"}},
		{"", []string{"local"}, pingFails, "local", "its stack's state is in /repo/.trousseau", nil},
		{"", []string{"kind"}, pingFails, "kind", "its stack's state is in /repo/.trousseau", nil},
		{"local", []string{"kind"}, pingFails, "local", EnvRuntime + "=local", nil},
		{"kind", nil, pingFails, "kind", EnvRuntime + "=kind", nil},
		{"KIND", nil, pingFails, "kind", EnvRuntime + "=KIND", nil},
		{" Local", nil, pingFails, "local", EnvRuntime + "= Local", nil},
	} {
		got, err := choose(c.env, c.existing, "/repo/.trousseau", c.ping)
		if err != nil {
			t.Errorf("choose(%q, %v): %v", c.env, c.existing, err)
			continue
		}
		if got.name != c.want || got.why != c.why {
			t.Errorf("choose(%q, %v) = %s (%s), want %s (%s)", c.env, c.existing, got.name, got.why, c.want, c.why)
		}
		if strings.Contains(got.why, "dial") {
			t.Errorf("choose(%q): the short reason %q carries the probe's error", c.env, got.why)
		}
		for _, p := range c.detail {
			if !strings.Contains(got.detail, p) {
				t.Errorf("choose(%q) detail %q does not mention %q", c.env, got.detail, p)
			}
		}
	}
}

func TestSelectRejectsAnUnknownRuntimeByName(t *testing.T) {
	t.Setenv(EnvRuntime, "bogus")
	_, err := Select(Options{RepoRoot: t.TempDir(), Progress: progress.Discard()})
	if want := EnvRuntime + "=bogus: unknown runtime; use kind or local"; err == nil || err.Error() != want {
		t.Fatalf("Select with %s=bogus: %v, want %q", EnvRuntime, err, want)
	}
}

func TestSelectPrintsOneShortLineAndTheDetailOnlyVerbose(t *testing.T) {
	t.Setenv(EnvRuntime, "")
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-docker.sock")
	Register("local", func(Options) (Runtime, error) { return nil, nil })
	for _, verbose := range []bool{false, true} {
		var b bytes.Buffer
		if _, err := Select(Options{RepoRoot: t.TempDir(), Progress: progress.New(&b, verbose)}); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !strings.HasPrefix(out, "runtime: local (no Docker engine)\n") {
			t.Errorf("verbose=%v: output starts %q, want the short line", verbose, out)
		}
		if got := strings.Contains(out, "no-docker.sock"); got != verbose {
			t.Errorf("verbose=%v: dial error printed = %v:\n%s", verbose, got, out)
		}
	}
}

func TestSumMetricAndKeyIDHash(t *testing.T) {
	text := `# TYPE trousseau_rpc_duration_seconds histogram
trousseau_rpc_duration_seconds_count{code="OK",method="Decrypt"} 7
trousseau_rpc_duration_seconds_count{code="Unavailable",method="Decrypt"} 2
trousseau_rpc_duration_seconds_count{code="OK",method="Encrypt"} 5
apiserver_envelope_encryption_key_id_hash_total{apiserver_id_hash="sha256:x",key_id_hash="` + KeyIDHash("k1") + `",provider_name="trousseau",transformation_type="to_storage"} 3
`
	if got := SumMetric(text, "trousseau_rpc_duration_seconds_count", `method="Decrypt"`); got != 9 {
		t.Errorf("Decrypt count = %v, want 9", got)
	}
	if !MetricHasKeyID(text, MetricKeyIDUsed, "k1", `transformation_type="to_storage"`) || MetricHasKeyID(text, MetricKeyIDUsed, "k2") {
		t.Error("MetricHasKeyID does not match sha256(key_id) exactly")
	}
	// sha256("k1"), computed independently.
	if got, want := KeyIDHash("k1"), "sha256:6ab9f1eb8f7d3388f4f9d586f66e99fd54080df2c446f0e58668b09c08a16dd0"; got != want {
		t.Errorf("KeyIDHash(k1) = %s, want %s", got, want)
	}
}

func TestSelectKindWithoutDockerEngineNamesCauseAndFix(t *testing.T) {
	t.Setenv(EnvRuntime, "kind")
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-docker.sock")
	_, err := Select(Options{})
	if err == nil {
		t.Fatal("Select chose kind without a Docker engine")
	}
	for _, want := range []string{"no Docker engine answered", "start Docker", "unset " + EnvRuntime} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestWaitEndedSaysInterruptedOnCancelAndTheRealWaitOnTimeout(t *testing.T) {
	started := time.Now().Add(-1700 * time.Millisecond)
	timedOut := func(waited time.Duration) error { return errors.New("still old key_id after " + waited.String()) }

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	err := WaitEnded(cancelled, "waiting for the new key_id", started, timedOut)
	if !errors.Is(err, ErrInterrupted) || strings.Contains(err.Error(), "still old") || !strings.Contains(err.Error(), "1.7s") {
		t.Errorf("cancelled wait: %v, want an interruption after 1.7s and no timeout claim", err)
	}

	expired, cancel2 := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel2()
	<-expired.Done()
	err = WaitEnded(expired, "waiting", started, timedOut)
	if errors.Is(err, ErrInterrupted) || err == nil || err.Error() != "still old key_id after 1.7s" {
		t.Errorf("timed-out wait: %v, want the timeout message with the real 1.7s wait", err)
	}
}

type kubeconfigOnly struct {
	Runtime
	path string
}

func (k kubeconfigOnly) Name() string       { return "local" }
func (k kubeconfigOnly) Kubeconfig() string { return k.path }

func TestClientsetOnADownStackSaysStartIt(t *testing.T) {
	_, err := Clientset(kubeconfigOnly{path: filepath.Join(t.TempDir(), "kubeconfig")})
	if err == nil {
		t.Fatal("Clientset without a kubeconfig succeeded")
	}
	for _, want := range []string{"the local stack is not running", "go tool mage demo"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "stat ") {
		t.Errorf("error %q leaks the raw stat failure", err)
	}
	// A present but broken file is a different problem, named as such.
	bad := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(bad, []byte("{not yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Clientset(kubeconfigOnly{path: bad}); err == nil || strings.Contains(err.Error(), "not running") {
		t.Errorf("broken kubeconfig: %v, want a load error", err)
	}
}
