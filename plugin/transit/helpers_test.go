package transit

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/trousseau-io/trousseau/vault-dev/vaultdevtest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/kms"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// One dev Vault serves every test of the package; it starts on first use so
// tests that only need the fake run without the Vault binary.
var shared = vaultdevtest.Shared{}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

func devVault(t testing.TB) *vaultdev.Server { return shared.Get(t) }

var keySeq atomic.Int64

// isolatedKey bootstraps a fresh Transit key with its own policy and AppRole
// role on the shared dev Vault, and returns a provider config for it.
func isolatedKey(t testing.TB, opts vaultdev.BootstrapOptions) (config.Vault, *vaultdev.Credentials) {
	t.Helper()
	srv := devVault(t)
	name := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			return r
		}
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, t.Name()) + fmt.Sprintf("-%d", keySeq.Add(1))
	opts.KeyName, opts.PolicyName, opts.RoleName = name, "p-"+name, "r-"+name
	opts.CredentialsDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creds, err := vaultdev.Bootstrap(ctx, srv.RootClient(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return config.Vault{
		Address: srv.Addr, TransitMount: "transit", KeyName: name,
		RequestTimeout: config.Duration{Duration: 2 * time.Second},
		Auth: config.VaultAuth{Method: "approle", AppRole: &config.AppRoleAuth{
			Mount: "approle", RoleIDFile: creds.RoleIDFile, SecretIDFile: creds.SecretIDFile,
		}},
	}, creds
}

// fakeConfig points a provider at address (a fake Vault, or nothing) with
// AppRole credential files.
func fakeConfig(t testing.TB, address string) config.Vault {
	t.Helper()
	dir := t.TempDir()
	role, secret := filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id")
	for _, f := range []string{role, secret} {
		if err := os.WriteFile(f, []byte("fake-"+filepath.Base(f)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return config.Vault{
		Address: address, TransitMount: "transit", KeyName: "k",
		RequestTimeout: config.Duration{Duration: 2 * time.Second},
		Auth:           config.VaultAuth{Method: "approle", AppRole: &config.AppRoleAuth{RoleIDFile: role, SecretIDFile: secret}},
	}
}

func newProvider(t testing.TB, cfg config.Vault, reg prometheus.Registerer) *Provider {
	t.Helper()
	p, err := New(context.Background(), cfg, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// apiserverCtx is the deadline kube-apiserver gives each KMS call by default.
func apiserverCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func seed(t testing.TB) []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func wantKind(t testing.TB, err error, kinds ...kms.Kind) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want kind %v", kinds)
	}
	got := kms.KindOf(err)
	for _, k := range kinds {
		if got == k {
			return
		}
	}
	t.Fatalf("got kind %v (%v), want one of %v", got, err, kinds)
}

func mustKeyID(t testing.TB, p *Provider) string {
	t.Helper()
	id, err := p.CurrentKeyID(apiserverCtx(t))
	if err != nil {
		t.Fatalf("CurrentKeyID: %v", err)
	}
	return id
}
