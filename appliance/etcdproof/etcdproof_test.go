package etcdproof

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	kmsv2api "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"

	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/plugin/ciphertext"
)

func stored(t *testing.T, keyID, vaultCT string) []byte {
	t.Helper()
	seed, err := ciphertext.Encode("vault", []byte(vaultCT))
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&kmsv2api.EncryptedObject{
		EncryptedData: []byte("sealed"), KeyID: keyID, EncryptedDEKSource: seed,
		EncryptedDEKSourceType: kmsv2api.EncryptedDEKSourceType_HKDF_SHA256_XNONCE_AES_GCM_SEED,
	})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(Prefix), b...)
}

func TestDecodeReadsKeyIDAndVaultVersion(t *testing.T) {
	env, err := Decode(stored(t, "transit-abc-v3", "vault:v3:AAAA"))
	if err != nil {
		t.Fatal(err)
	}
	if env.KeyID != "transit-abc-v3" || env.Provider != "vault" || env.VaultKeyVersion != 3 || env.VaultCiphertext != "vault:v3:AAAA" {
		t.Errorf("decoded %+v", env)
	}
}

func TestDecodeRejectsPlaintextAndOtherProviders(t *testing.T) {
	for _, v := range [][]byte{
		[]byte(`{"kind":"Secret"}`),
		[]byte("k8s:enc:kms:v2:other:xyz"),
		[]byte("k8s:enc:aescbc:v1:key1:xyz"),
	} {
		if _, err := Decode(v); err == nil {
			t.Errorf("Decode(%q) succeeded, want an error", v)
		}
	}
}

func TestClassifyCountsPlaintextCurrentAndOlder(t *testing.T) {
	r := Classify("secrets", "k-v2", []runtime.KV{
		{Key: "/registry/secrets/a/1", Value: stored(t, "k-v2", "vault:v2:AA")},
		{Key: "/registry/secrets/a/2", Value: stored(t, "k-v2", "vault:v2:BB")},
		{Key: "/registry/secrets/a/3", Value: stored(t, "k-v1", "vault:v1:CC")},
		{Key: "/registry/secrets/a/4", Value: []byte("\x6b\x38\x73\x00plain")},
		{Key: "/registry/secrets/a/5", Value: []byte("k8s:enc:kms:v2:trousseau:\xff\xff")},
	})
	if r.Total != 5 || r.Current != 2 || r.Stale() != 1 || len(r.Plaintext) != 1 || len(r.Undecodable) != 1 || r.OK() {
		t.Errorf("report %+v", r)
	}
	if len(r.OlderKeys) != 1 || r.OlderKeys[0] != "/registry/secrets/a/3" {
		t.Errorf("stale keys %v, want [/registry/secrets/a/3]", r.OlderKeys)
	}
	if s := r.String(); !strings.Contains(s, "2/5 on key_id k-v2") || !strings.Contains(s, "1 PLAINTEXT") {
		t.Errorf("audit line %q", s)
	}
	if ok := Classify("secrets", "k-v2", []runtime.KV{{Key: "x", Value: stored(t, "k-v2", "vault:v2:AA")}}); !ok.OK() {
		t.Errorf("all-current report not OK: %+v", ok)
	}
}
