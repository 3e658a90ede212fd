package conformance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
)

// BenchmarkSocketOverheadOverDirectTransit measures what the plugin adds to
// a Transit call: each iteration makes one call through the socket with the
// apiserver's own gRPC client, one call of the provider in-process (no gRPC)
// and one direct Transit call with a token of the same policy, interleaved so
// all three see the same machine load. The target
// is ≤ 5 % at p50.
func BenchmarkSocketOverheadOverDirectTransit(b *testing.B) {
	for _, op := range []string{"encrypt", "decrypt"} {
		b.Run(op, func(b *testing.B) {
			s := newStack(b, "bench-"+op)
			ctx := context.Background()
			client, err := kmsv2.NewGRPCService(ctx, "unix://"+s.socket, controlplane.ProviderName, controlplane.KMSTimeout)
			if err != nil {
				b.Fatal(err)
			}
			direct := directClient(b, s)
			seed := make([]byte, 32)
			if _, err := rand.Read(seed); err != nil {
				b.Fatal(err)
			}
			b64 := base64.StdEncoding.EncodeToString(seed)
			keyID := s.plugin.Snapshot().KeyID

			enc, err := client.Encrypt(ctx, "bench", seed)
			if err != nil {
				b.Fatal(err)
			}
			vaultCT, err := direct.Logical().WriteWithContext(ctx, "transit/encrypt/"+s.key, map[string]any{"plaintext": b64})
			if err != nil {
				b.Fatal(err)
			}
			viaSocket := func() error {
				_, err := client.Encrypt(ctx, "bench", seed)
				return err
			}
			viaProvider := func() error {
				_, err := s.provider.Encrypt(ctx, keyID, seed)
				return err
			}
			viaDirect := func() error {
				_, err := direct.Logical().WriteWithContext(ctx, "transit/encrypt/"+s.key, map[string]any{"plaintext": b64, "key_version": 1})
				return err
			}
			if op == "decrypt" {
				viaSocket = func() error {
					_, err := client.Decrypt(ctx, "bench", &kmsservice.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: keyID})
					return err
				}
				viaProvider = func() error {
					_, err := s.provider.Decrypt(ctx, keyID, []byte(vaultCT.Data["ciphertext"].(string)))
					return err
				}
				viaDirect = func() error {
					_, err := direct.Logical().WriteWithContext(ctx, "transit/decrypt/"+s.key, map[string]any{"ciphertext": vaultCT.Data["ciphertext"]})
					return err
				}
			}

			socketLat := make([]time.Duration, 0, b.N)
			providerLat := make([]time.Duration, 0, b.N)
			directLat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := viaSocket(); err != nil {
					b.Fatal(err)
				}
				socketLat = append(socketLat, time.Since(start))
				start = time.Now()
				if err := viaProvider(); err != nil {
					b.Fatal(err)
				}
				providerLat = append(providerLat, time.Since(start))
				start = time.Now()
				if err := viaDirect(); err != nil {
					b.Fatal(err)
				}
				directLat = append(directLat, time.Since(start))
			}
			b.StopTimer()
			sp50, dp50 := p50(socketLat), p50(directLat)
			b.ReportMetric(float64(sp50.Microseconds()), "socket-p50-µs")
			b.ReportMetric(float64(dp50.Microseconds()), "direct-p50-µs")
			b.ReportMetric(float64(p50(providerLat).Microseconds()), "provider-p50-µs")
			b.ReportMetric(100*(float64(sp50)-float64(dp50))/float64(dp50), "overhead-p50-%")
		})
	}
}

func p50(lat []time.Duration) time.Duration {
	slices.Sort(lat)
	return lat[len(lat)/2]
}

// directClient is a bare vault/api client with a token of the plugin's own
// policy, so the comparison isolates the plugin's cost.
func directClient(b *testing.B, s *stack) *vaultapi.Client {
	b.Helper()
	root := s.vault.RootClient()
	tok, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{s.creds.PolicyName}, TTL: "1h"})
	if err != nil {
		b.Fatal(err)
	}
	c, err := root.Clone()
	if err != nil {
		b.Fatal(err)
	}
	c.SetToken(tok.Auth.ClientToken)
	return c
}
