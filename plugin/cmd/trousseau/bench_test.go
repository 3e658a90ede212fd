package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	kmsservice "k8s.io/kms/pkg/service"

	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// BenchmarkEncryptDecryptRealVault measures one Encrypt plus one Decrypt as
// the apiserver sees them: its gRPC client, our socket, a real dev Vault.
func BenchmarkEncryptDecryptRealVault(b *testing.B) {
	ctx := context.Background()
	vdir := b.TempDir()
	vault, err := vaultdev.Start(ctx, vaultdev.Options{Dir: vdir})
	if err != nil {
		b.Fatalf("start dev Vault: %v", err)
	}
	b.Cleanup(vault.Stop)
	creds, err := vaultdev.Bootstrap(ctx, vault.RootClient(), vaultdev.BootstrapOptions{CredentialsDir: vdir})
	if err != nil {
		b.Fatal(err)
	}
	p := startServe(b, shortDir(b), fmt.Sprintf(`
provider:
  vault:
    address: %s
    auth:
      method: approle
      approle: {roleIDFile: %s, secretIDFile: %s}
`, vault.Addr, creds.RoleIDFile, creds.SecretIDFile))
	eventually(b, 10*time.Second, "healthy Status", func() bool { return p.status(b).Healthz == "ok" })

	seed := bytes.Repeat([]byte{42}, 32)
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		enc, err := p.client.Encrypt(ctx, "uid-bench", seed)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.client.Decrypt(ctx, "uid-bench", &kmsservice.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: enc.KeyID}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
