//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trousseau-io/trousseau/appliance/demo"
	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/migrate"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/plugin/keyid"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// Every Secret in etcd is a trousseau envelope: the prefix, the plugin's
// Status key_id, and an encrypted seed that is our ciphertext wrapping a
// Vault Transit ciphertext which Vault itself decrypts to a 32-byte seed.
// The apiserver's metric carries sha256(key_id).
func TestSecretsInEtcdAreTrousseauEnvelopesUnderTheStatusKeyID(t *testing.T) {
	ensureKMS(t)
	ctx := context.Background()
	ns := namespace(t, "e2e-proof")
	secrets := seed(t, ns, "proof", 5)
	st := pluginStatus(t)
	version, err := keyid.TransitVersion(st.KeyID)
	if err != nil {
		t.Fatalf("plugin key_id %q does not name a Transit version: %v", st.KeyID, err)
	}

	kvs, err := rt.EtcdList(ctx, "/registry/secrets/")
	if err != nil {
		t.Fatal(err)
	}
	if r := etcdproof.Classify("secrets", st.KeyID, kvs); !r.OK() {
		t.Errorf("not every Secret is on the Status key_id: %s", r)
	}
	root, err := rt.VaultRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mount, key := rt.Transit()
	checked := map[string]bool{} // Vault ciphertexts already decrypted
	for _, kv := range kvs {
		env, err := etcdproof.Decode(kv.Value)
		if err != nil {
			t.Errorf("%s: %v", kv.Key, err)
			continue
		}
		if env.KeyID != st.KeyID {
			t.Errorf("%s: envelope key_id %s, plugin Status key_id %s", kv.Key, env.KeyID, st.KeyID)
		}
		if env.VaultCiphertext == "" || env.VaultKeyVersion != version {
			t.Errorf("%s: encrypted seed does not wrap a Vault v%d ciphertext (provider %q, version %d)", kv.Key, version, env.Provider, env.VaultKeyVersion)
			continue
		}
		if checked[env.VaultCiphertext] {
			continue
		}
		checked[env.VaultCiphertext] = true
		out, err := root.Logical().WriteWithContext(ctx, mount+"/decrypt/"+key, map[string]any{"ciphertext": env.VaultCiphertext})
		if err != nil || out == nil {
			t.Errorf("%s: Vault cannot decrypt the wrapped seed: %v", kv.Key, err)
			continue
		}
		seed, _ := base64.StdEncoding.DecodeString(out.Data["plaintext"].(string))
		if len(seed) != 32 {
			t.Errorf("%s: Vault decrypts the wrapped seed to %d bytes, want a 32-byte DEK seed", kv.Key, len(seed))
		}
	}
	for name, value := range secrets {
		kv, err := rt.EtcdList(ctx, "/registry/secrets/"+ns+"/"+name)
		if err != nil || len(kv) != 1 {
			t.Fatalf("etcd value of %s: %v", name, err)
		}
		if containsAny(kv[0].Value, value) {
			t.Errorf("the value of %s appears in etcd in clear", name)
		}
	}
	metrics, err := runtime.APIServerMetrics(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if !runtime.MetricHasKeyID(metrics, runtime.MetricKeyIDUsed, st.KeyID, `transformation_type="to_storage"`) {
		t.Errorf("%s has no to_storage series with key_id_hash %s", runtime.MetricKeyIDUsed, runtime.KeyIDHash(st.KeyID))
	}
}

// Rotation: new writes carry the new key_id, old Secrets stay readable,
// and after migration zero objects remain on the old key_id.
func TestRotationMovesEverySecretToTheNewKeyID(t *testing.T) {
	ensureKMS(t)
	ctx := context.Background()
	ns := namespace(t, "e2e-rotation")
	old := seed(t, ns, "old", 10)
	before := pluginStatus(t)

	root, err := rt.VaultRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mount, key := rt.Transit()
	if _, err := vaultdev.Rotate(ctx, root, mount, key); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	newKeyID, err := demo.WaitPluginKeyChange(ctx, rt, before.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	figure(t, "rotation_plugin_key_change_seconds", time.Since(start).Seconds())
	if err := demo.WaitForWriteKeyID(ctx, rt, cs, newKeyID); err != nil {
		t.Fatal(err)
	}
	figure(t, "rotation_apiserver_writes_new_key_seconds", time.Since(start).Seconds())

	fresh := seed(t, ns, "new", 3)
	for name := range fresh {
		if got := envelopeKeyID(t, ns, name); got != newKeyID {
			t.Errorf("new Secret %s is on key_id %s, want %s", name, got, newKeyID)
		}
	}
	for name, value := range old {
		if got := envelopeKeyID(t, ns, name); got != before.KeyID {
			t.Errorf("before migration, %s is on key_id %s, want the old %s", name, got, before.KeyID)
		}
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || string(s.Data["value"]) != value {
			t.Errorf("old Secret %s unreadable after rotation: %v", name, err)
		}
	}
	metrics, err := runtime.APIServerMetrics(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if !runtime.MetricHasKeyID(metrics, runtime.MetricKeyIDFromStatus, newKeyID) {
		t.Errorf("%s has no series for the new key_id", runtime.MetricKeyIDFromStatus)
	}

	migrated, err := migrate.Secrets(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	figure(t, "rotation_migrated_secrets", migrated)
	kvs, err := rt.EtcdList(ctx, "/registry/secrets/")
	if err != nil {
		t.Fatal(err)
	}
	r := etcdproof.Classify("secrets", newKeyID, kvs)
	t.Logf("audit after migration: %s", r)
	if r.Older[before.KeyID] != 0 || !r.OK() {
		t.Errorf("after migration %d Secrets remain on the old key_id: %s", r.Older[before.KeyID], r)
	}
}

func envelopeKeyID(t *testing.T, ns, name string) string {
	t.Helper()
	kvs, err := rt.EtcdList(context.Background(), "/registry/secrets/"+ns+"/"+name)
	if err != nil || len(kvs) != 1 {
		t.Fatalf("etcd value of %s/%s: %d values, %v", ns, name, len(kvs), err)
	}
	env, err := etcdproof.Decode(kvs[0].Value)
	if err != nil {
		t.Fatalf("%s/%s: %v", ns, name, err)
	}
	return env.KeyID
}

func containsAny(raw []byte, value string) bool {
	return len(value) >= 4 && (bytes.Contains(raw, []byte(value)) ||
		bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString([]byte(value)))))
}
