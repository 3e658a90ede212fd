package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
)

func TestIdentityOnlyConfigLoadsInTheApiserverWithoutAPlugin(t *testing.T) {
	out, err := EncryptionConfig(IdentityOnly, SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "kms") {
		t.Errorf("identity-only config names a kms provider, so /healthz would fail before the plugin runs:\n%s", out)
	}
	path := filepath.Join(t.TempDir(), EncryptionConfigFile)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := encryptionconfig.LoadEncryptionConfig(ctx, path, true, "test")
	if err != nil {
		t.Fatalf("the apiserver rejects the identity-only config: %v", err)
	}
	if _, ok := cfg.Transformers[schema.GroupResource{Resource: "secrets"}]; !ok {
		t.Error("no transformer for secrets")
	}
}

func TestKMSFirstConfigWritesWithTrousseauAndReadsIdentity(t *testing.T) {
	out, err := EncryptionConfig(KMSFirst, "/run/x/kms.sock")
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	kms, identity := strings.Index(s, "kms:"), strings.Index(s, "identity:")
	if kms < 0 || identity < 0 || kms > identity {
		t.Fatalf("want kms first, then identity:\n%s", s)
	}
	for _, want := range []string{"apiVersion: v2", "name: " + ProviderName, "endpoint: unix:///run/x/kms.sock", "timeout: 3s"} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q:\n%s", want, s)
		}
	}
}

func TestEncryptionConfigRejectsBadInput(t *testing.T) {
	if _, err := EncryptionConfig(KMSFirst, "relative/kms.sock"); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative socket path: got %v", err)
	}
	if _, err := EncryptionConfig("aescbc", SocketPath()); err == nil || !strings.Contains(err.Error(), "unknown encryption mode") {
		t.Errorf("unknown mode: got %v", err)
	}
}

func TestArgsAreSortedFlagsInCommandLineForm(t *testing.T) {
	got := Args(map[string]string{"b": "2", "a": "1", "encryption-provider-config": "/x/y.yaml"})
	want := []string{"--a=1", "--b=2", "--encryption-provider-config=/x/y.yaml"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Args = %q, want %q", got, want)
	}
}
