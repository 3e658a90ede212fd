package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmstypes "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"
	kmsservice "k8s.io/kms/pkg/service"

	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// TestServeWithRealVaultRotationAndHang runs `trousseau serve` against a
// real dev Vault bootstrapped with the least-privilege AppRole, and drives it
// with the apiserver's own client and DEK generation:
//   - the apiserver accepts our Encrypt response and key_id (field case 14),
//   - a rotation shows in Status within a refresh, the next Encrypt carries
//     the new key_id and old data still decrypts (field case 07),
//   - a hung Vault never holds a call past the apiserver's 3s timeout, Status
//     keeps answering with a reason, /livez stays 200, and everything
//     recovers on its own (field cases 02, 20),
//   - the secret_id and seeds never reach the logs (field case 10).
func TestServeWithRealVaultRotationAndHang(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vdir := t.TempDir()
	vault, err := vaultdev.Start(ctx, vaultdev.Options{Dir: vdir})
	if err != nil {
		t.Fatalf("start dev Vault: %v", err)
	}
	t.Cleanup(vault.Stop)
	creds, err := vaultdev.Bootstrap(ctx, vault.RootClient(), vaultdev.BootstrapOptions{CredentialsDir: vdir})
	if err != nil {
		t.Fatalf("bootstrap dev Vault: %v", err)
	}
	secretID, err := os.ReadFile(creds.SecretIDFile)
	if err != nil {
		t.Fatal(err)
	}

	p := startServe(t, shortDir(t), fmt.Sprintf(`
provider:
  vault:
    address: %s
    auth:
      method: approle
      approle: {roleIDFile: %s, secretIDFile: %s}
`, vault.Addr, creds.RoleIDFile, creds.SecretIDFile))
	eventually(t, 10*time.Second, "healthy Status", func() bool { return p.status(t).Healthz == "ok" })
	st1 := p.status(t)
	if !strings.HasSuffix(st1.KeyID, "-v1") {
		t.Fatalf("key_id %q should name Transit key version 1", st1.KeyID)
	}

	// The apiserver's path on a new key_id: generate a seed, Encrypt it,
	// check the key_id, encrypt a Secret with the derived DEK.
	tr1, obj1, stored1 := apiserverWrite(t, ctx, p.client, "secret one")
	if obj1.KeyID != st1.KeyID {
		t.Fatalf("Encrypt key_id %q != Status key_id %q: the apiserver would drop the DEK", obj1.KeyID, st1.KeyID)
	}

	// Rotation (field case 07).
	if _, err := vaultdev.Rotate(ctx, vault.RootClient(), "transit", "kubernetes"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "Status to report key version 2", func() bool { return strings.HasSuffix(p.status(t).KeyID, "-v2") })
	st2 := p.status(t)
	_, obj2, _ := apiserverWrite(t, ctx, p.client, "secret two")
	if obj2.KeyID != st2.KeyID {
		t.Fatalf("after rotation Encrypt key_id %q != Status key_id %q", obj2.KeyID, st2.KeyID)
	}
	seed1, err := p.client.Decrypt(ctx, "uid-old", &kmsservice.DecryptRequest{Ciphertext: obj1.EncryptedDEKSource, KeyID: obj1.KeyID, Annotations: obj1.Annotations})
	if err != nil || len(seed1) != 32 {
		t.Fatalf("decrypt the pre-rotation DEK source: %d bytes, %v", len(seed1), err)
	}
	if got, _, err := tr1.TransformFromStorage(ctx, stored1, value.DefaultContext("/registry/secrets/default/s")); err != nil || string(got) != "secret one" {
		t.Fatalf("read back pre-rotation data = %q, %v", got, err)
	}

	// Vault hangs (field cases 02, 20).
	if err := vault.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			vault.Thaw()
		}
	}()
	// SIGSTOP lands asynchronously: wait until Vault really stops answering.
	eventually(t, 5*time.Second, "Vault to stop answering", func() bool {
		hctx, hcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer hcancel()
		req, err := http.NewRequestWithContext(hctx, http.MethodGet, vault.Addr+"/v1/sys/health", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	start := time.Now()
	_, err = p.client.Encrypt(ctx, "uid-hung", bytes.Repeat([]byte{7}, 32))
	elapsed := time.Since(start)
	if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
		t.Fatalf("Encrypt against a hung Vault = %v, want DeadlineExceeded or Unavailable", err)
	}
	if elapsed > 3500*time.Millisecond {
		t.Fatalf("Encrypt against a hung Vault took %s, past the apiserver's 3s timeout", elapsed)
	}
	eventually(t, 10*time.Second, "Status to report the hang", func() bool { return p.status(t).Healthz != "ok" })
	hung := p.status(t)
	if hung.KeyID != st2.KeyID || !strings.HasPrefix(hung.Healthz, "vault-transit: ") {
		t.Fatalf("Status during the hang = %+v, want the last key_id %s and a vault-transit reason", hung, st2.KeyID)
	}
	t.Logf("healthz while Vault hangs: %s", hung.Healthz)
	if code, _ := httpGet(t, p.opsURL(t)+"/livez"); code != 200 {
		t.Fatalf("/livez = %d while Vault hangs", code)
	}
	if code, _ := httpGet(t, p.opsURL(t)+"/readyz"); code != 503 {
		t.Fatalf("/readyz = %d while Vault hangs, want 503", code)
	}

	if err := vault.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	eventually(t, 15*time.Second, "recovery after the hang", func() bool { return p.status(t).Healthz == "ok" })
	apiserverWrite(t, ctx, p.client, "secret three")

	logs := p.logs.String()
	for form, s := range leakForms(bytes.TrimSpace(secretID)) {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the secret_id (%s form)", form)
		}
	}
	for form, s := range leakForms(seed1) {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain a seed (%s form)", form)
		}
	}
	// The plugin's own token is not known here, but every service token
	// this Vault issues starts with hvs.
	if strings.Contains(logs, "hvs.") {
		t.Errorf("logs contain a Vault token (hvs. prefix):\n%s", logs)
	}
}

// apiserverWrite does what kube-apiserver does on its first write after a
// key_id change: GenerateTransformer (seed + Encrypt), then encrypting the
// object and validating the envelope it would store in etcd.
func apiserverWrite(t *testing.T, ctx context.Context, client kmsservice.Service, data string) (value.Transformer, *kmstypes.EncryptedObject, []byte) {
	t.Helper()
	tr, obj, _, err := kmsv2.GenerateTransformer(ctx, "uid-write", client, true)
	if err != nil {
		t.Fatalf("apiserver DEK generation: %v", err)
	}
	stored, err := tr.TransformToStorage(ctx, []byte(data), value.DefaultContext("/registry/secrets/default/s"))
	if err != nil {
		t.Fatalf("encrypt with the DEK: %v", err)
	}
	obj.EncryptedData = stored
	if err := kmsv2.ValidateEncryptedObject(obj); err != nil {
		t.Fatalf("the apiserver would reject this envelope: %v", err)
	}
	return tr, obj, stored
}
