package kind

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// TestWaitsTellACtrlCFromATimeout: every wait in the kind runtime (the
// generic waitFor behind readiness, Vault and apiserver waits, and the
// reload wait) says "interrupted" when the caller cancels, and on a timeout
// names the time it really waited, even when the caller's deadline, not
// the wait's own, ended it.
func TestWaitsTellACtrlCFromATimeout(t *testing.T) {
	never := func() (bool, error) { return false, errors.New("readyz: 503") }
	stale := func(context.Context) (map[string]apiserverConfig, error) {
		return map[string]apiserverConfig{"trousseau-control-plane": {Reloads: 1}}, nil
	}
	before := map[string]apiserverConfig{"trousseau-control-plane": {Reloads: 1}}
	waits := []struct {
		name, what, cause string
		wait              func(context.Context) error
	}{
		{"waitFor", "waiting for the plugin to be ready", "(last error: readyz: 503)", func(ctx context.Context) error {
			return waitFor(ctx, 2*time.Minute, "the plugin to be ready", never)
		}},
		{"waitReload", "waiting for every kube-apiserver to reload", "now map[trousseau-control-plane:1 reloads]", func(ctx context.Context) error {
			return waitReload(ctx, before, "sha256:new", true, stale)
		}},
	}
	elapsed := regexp.MustCompile(`(?:after|within) ([0-9][0-9.hm]*m?s)\b`)
	for _, w := range waits {
		// Ctrl-C: mage cancels its context.
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		err := w.wait(ctx)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s: returned %s after the cancel, want promptly", w.name, took)
		}
		if !errors.Is(err, runtime.ErrInterrupted) {
			t.Errorf("%s cancelled: %v, want runtime.ErrInterrupted", w.name, err)
		} else if msg := err.Error(); !strings.Contains(msg, w.what) || strings.Contains(msg, "timed out") || strings.Contains(msg, "within") {
			t.Errorf("%s cancelled: %q should name what it waited for and not read as a timeout", w.name, msg)
		}

		// A real timeout, here the caller's deadline, far shorter than
		// the wait's own.
		ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
		err = w.wait(ctx)
		cancel()
		if err == nil || errors.Is(err, runtime.ErrInterrupted) {
			t.Fatalf("%s timed out: %v, want a timeout, not an interruption", w.name, err)
		}
		if !strings.Contains(err.Error(), w.cause) {
			t.Errorf("%s timed out: %q does not say why (%q)", w.name, err, w.cause)
		}
		m := elapsed.FindStringSubmatch(err.Error())
		if m == nil {
			t.Fatalf("%s timed out: %q names no elapsed time", w.name, err)
		}
		waited, perr := time.ParseDuration(m[1])
		if perr != nil || waited < 300*time.Millisecond || waited >= 2*time.Minute {
			t.Errorf("%s timed out after 300ms but says %s (%v): want the real elapsed time, not the wait's budget", w.name, m[1], perr)
		}
	}
	if err := waitFor(context.Background(), time.Minute, "x", func() (bool, error) { return true, nil }); err != nil {
		t.Errorf("waitFor on a condition that holds: %v", err)
	}
	if err := waitReload(context.Background(), before, "sha256:new", true, func(context.Context) (map[string]apiserverConfig, error) {
		return map[string]apiserverConfig{"trousseau-control-plane": {Reloads: 2}}, nil
	}); err != nil {
		t.Errorf("waitReload after a reload: %v", err)
	}
}

// TestReloadWaitFollowsTheFileEachAPIServerRuns: an apiserver that names
// the hash of the config it runs is done exactly when that is the new
// file's hash, also when Up re-runs with the file already written (its
// reload may still be pending); one that does not name it is done after a
// new successful reload, or at once when the file did not change.
func TestReloadWaitFollowsTheFileEachAPIServerRuns(t *testing.T) {
	content := []byte("kind: EncryptionConfiguration\n")
	want := encryptionConfigHash(content)
	if want != fmt.Sprintf("sha256:%x", sha256.Sum256(content)) {
		t.Fatalf("hash %s is not the apiserver's sha256:<hex> of the file", want)
	}
	// The exposition format of k8s.io/apiserver's encryptionconfig metrics.
	metrics := `# TYPE apiserver_encryption_config_controller_automatic_reloads_total counter
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:14f9",status="failure"} 2
apiserver_encryption_config_controller_automatic_reloads_total{apiserver_id_hash="sha256:14f9",status="success"} 3
# TYPE apiserver_encryption_config_controller_last_config_info gauge
apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:14f9",hash="` + want + `"} 1
`
	got := parseAPIServerConfig(metrics)
	if got.Reloads != 3 || got.Hash != want {
		t.Fatalf("parsed %+v, want 3 successful reloads running %s", got, want)
	}
	old := apiserverConfig{Reloads: 3, Hash: "sha256:old"}
	noHash := apiserverConfig{Reloads: 3}
	for _, tc := range []struct {
		name          string
		before, now   apiserverConfig
		changed, runs bool
	}{
		{"reloaded to the new file", old, got, true, true},
		{"still on the old file", old, old, true, false},
		{"re-run, reload still pending", old, old, false, false},
		{"re-run, already applied", got, got, false, true},
		{"no hash metric, reloaded", noHash, apiserverConfig{Reloads: 4}, true, true},
		{"no hash metric, not yet", noHash, noHash, true, false},
		{"no hash metric, unchanged file", noHash, noHash, false, true},
	} {
		if r := tc.now.runs(tc.before, want, tc.changed); r != tc.runs {
			t.Errorf("%s: runs = %v, want %v", tc.name, r, tc.runs)
		}
	}
	if parseAPIServerConfig("apiserver_request_total 1\n").Hash != "" {
		t.Error("a hash read from metrics without lastConfigMetric")
	}
}
