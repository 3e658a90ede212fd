package transit

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// The benchmarks compare the provider with a bare vault/api client calling
// the same Transit endpoint with a token of the same policy, so the
// difference is the provider's own cost (auth wrapper, validation, metrics).

func benchSetup(b *testing.B) (*Provider, string, *vaultapi.Client, string) {
	cfg, creds := isolatedKey(b, vaultdev.BootstrapOptions{})
	p := newProvider(b, cfg, nil)
	id := mustKeyID(b, p)
	root := devVault(b).RootClient()
	tok, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{creds.PolicyName}, TTL: "1h"})
	if err != nil {
		b.Fatal(err)
	}
	direct, err := root.Clone()
	if err != nil {
		b.Fatal(err)
	}
	direct.SetToken(tok.Auth.ClientToken)
	return p, id, direct, cfg.TransitMount + "/%s/" + cfg.KeyName
}

func measure(b *testing.B, op func() error) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkEncryptDirectTransit(b *testing.B) {
	_, _, direct, path := benchSetup(b)
	pt := base64.StdEncoding.EncodeToString(seed(b))
	measure(b, func() error {
		_, err := direct.Logical().WriteWithContext(context.Background(), fmt.Sprintf(path, "encrypt"), map[string]any{"plaintext": pt, "key_version": 1})
		return err
	})
}

func BenchmarkEncryptProvider(b *testing.B) {
	p, id, _, _ := benchSetup(b)
	pt := seed(b)
	measure(b, func() error {
		_, err := p.Encrypt(context.Background(), id, pt)
		return err
	})
}

func BenchmarkDecryptDirectTransit(b *testing.B) {
	p, id, direct, path := benchSetup(b)
	ct, err := p.Encrypt(context.Background(), id, seed(b))
	if err != nil {
		b.Fatal(err)
	}
	measure(b, func() error {
		_, err := direct.Logical().WriteWithContext(context.Background(), fmt.Sprintf(path, "decrypt"), map[string]any{"ciphertext": string(ct)})
		return err
	})
}

func BenchmarkDecryptProvider(b *testing.B) {
	p, id, _, _ := benchSetup(b)
	ct, err := p.Encrypt(context.Background(), id, seed(b))
	if err != nil {
		b.Fatal(err)
	}
	measure(b, func() error {
		_, err := p.Decrypt(context.Background(), id, ct)
		return err
	})
}
