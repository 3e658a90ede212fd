package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// ShowOne prints one Secret twice: as kubectl sees it through the
// apiserver, and as etcd stores it, then proves no value leaked into the
// stored bytes.
func ShowOne(ctx context.Context, rt runtime.Runtime, cs kubernetes.Interface, p *progress.Printer, name string) error {
	s, err := cs.CoreV1().Secrets(Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read Secret %s/%s: %w", Namespace, name, err)
	}
	key := "/registry/secrets/" + Namespace + "/" + name
	kvs, err := rt.EtcdList(ctx, key)
	if err != nil {
		return err
	}
	if len(kvs) != 1 {
		return fmt.Errorf("etcd holds %d values at %s, want 1", len(kvs), key)
	}
	raw := kvs[0].Value
	p.Say("")
	p.Say("▸ one Secret, two views: %s/%s", Namespace, name)
	p.Say("  through the apiserver:  kubectl -n %s get secret %s -o jsonpath='{.data.%s}' | base64 -d", Namespace, name, showcaseKey)
	p.Block(string(s.Data[showcaseKey]))
	p.Say("  in etcd (%d bytes at %s):", len(raw), key)
	p.Block(etcdproof.Hexdump(raw, 96))
	env, err := etcdproof.Decode(raw)
	if err != nil {
		return fmt.Errorf("the stored value is not a trousseau KMS v2 envelope: %w", err)
	}
	p.Say("  decoded envelope (k8s.io/apiserver kmsv2 EncryptedObject):")
	p.Block(fmt.Sprintf("prefix              %s\nkey_id              %s\nencrypted DEK seed  %d bytes, trousseau envelope for provider %q\nVault ciphertext    %s\nVault key version   %d\nencrypted object    %d bytes (AES-GCM, DEK derived from the seed)",
		etcdproof.Prefix, env.KeyID, len(env.EncryptedSeed), env.Provider, abbreviate(env.VaultCiphertext, 40), env.VaultKeyVersion, env.DataSize))
	if leaked := leaks(raw, s.Data); leaked != "" {
		return fmt.Errorf("the value of %q appears in the raw etcd bytes: Secrets are NOT encrypted", leaked)
	}
	p.Say("  ✓ none of the %d values appears in the stored bytes, in clear or base64", len(s.Data))
	return nil
}

// leaks returns the first data key whose value (or a 64-byte chunk of a
// large value, in clear or base64) appears in raw.
func leaks(raw []byte, data map[string][]byte) string {
	for k, v := range data {
		if len(v) < 4 {
			continue
		}
		if len(v) > 64 {
			v = v[len(v)/2 : len(v)/2+64]
		}
		if bytes.Contains(raw, v) || bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(v))) {
			return k
		}
	}
	return ""
}

func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… (%d chars)", len(s))
}
