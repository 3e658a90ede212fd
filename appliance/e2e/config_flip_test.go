//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/demo"
	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/migrate"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// Field case 15: the encryption config is edited while automatic reload is
// on. As the kind flow does: start identity-only, turn KMS on, wait for the
// reload, migrate, audit shows 0 plaintext, and reads and writes run
// throughout without a single failure.
func TestFieldCase15ConfigFlipIdentityToKMSUnderLoad(t *testing.T) {
	ctx := context.Background()
	if mode != controlplane.IdentityOnly {
		if err := rt.SetEncryptionMode(ctx, controlplane.IdentityOnly); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "identity-only writes after the reload", 3*time.Minute, writesPlaintext)
		mode = controlplane.IdentityOnly
	}
	ns := namespace(t, "e2e-flip")
	existing := seed(t, ns, "before-flip", 30)
	kvs, err := rt.EtcdList(ctx, "/registry/secrets/"+ns+"/")
	if err != nil {
		t.Fatal(err)
	}
	if r := etcdproof.Classify("secrets", "", kvs); len(r.Plaintext) != len(existing) {
		t.Fatalf("identity-only stack stored %d of %d Secrets in plaintext, want all: the starting point is wrong", len(r.Plaintext), len(existing))
	}
	reloadsBefore := reloads(t)

	l := startLoad(ns, existing, 2, 2)
	start := time.Now()
	if err := rt.SetEncryptionMode(ctx, controlplane.KMSFirst); err != nil {
		l.halt()
		t.Fatal(err)
	}
	st := pluginStatus(t)
	if err := demo.WaitForWriteKeyID(ctx, rt, cs, st.KeyID); err != nil {
		l.halt()
		t.Fatal(err)
	}
	figure(t, "config_flip_to_kms_writes_seconds", time.Since(start).Seconds())
	if got := reloads(t); got <= reloadsBefore {
		t.Errorf("apiserver_encryption_config_controller_automatic_reloads_total{status=\"success\"} = %v, want > %v", got, reloadsBefore)
	}
	migrated, err := migrate.Secrets(ctx, cs)
	if err != nil {
		l.halt()
		t.Fatal(err)
	}
	mode = controlplane.KMSFirst
	// Keep the load running a little after the migration: the
	// connection churn of the reload happens around here.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	l.halt()
	l.summary(t)
	figure(t, "config_flip_migrated_secrets", migrated)

	if len(l.writeErrs) > 0 || len(l.readErrs) > 0 {
		t.Errorf("%d writes and %d reads failed during the config flip, want none", len(l.writeErrs), len(l.readErrs))
	}
	if len(l.acked) == 0 {
		t.Error("no write was acknowledged during the flip: the load did not run")
	}
	l.verifyAcked(t)

	reports, err := etcdproof.Audit(ctx, rt)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		t.Logf("audit: %s", r)
		if !r.OK() {
			t.Errorf("after the flip and migration, audit is not clean: %s", r)
		}
	}
}

// writesPlaintext checks that a write now lands unencrypted.
func writesPlaintext(ctx context.Context) error {
	if err := secretWorks(ctx); err != nil {
		return err
	}
	kvs, err := rt.EtcdList(ctx, "/registry/secrets/default/probe-")
	if err != nil {
		return err
	}
	newest := kvs[len(kvs)-1]
	for _, kv := range kvs {
		if kv.Key > newest.Key {
			newest = kv
		}
	}
	if bytes.HasPrefix(newest.Value, []byte("k8s:enc:")) {
		return errString("still encrypting")
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

func reloads(t *testing.T) float64 {
	t.Helper()
	m, err := runtime.APIServerMetrics(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.SumMetric(m, "apiserver_encryption_config_controller_automatic_reloads_total", `status="success"`)
}
