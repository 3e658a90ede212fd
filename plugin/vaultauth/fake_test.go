package vaultauth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/internal/fakevault"
	"github.com/trousseau-io/trousseau/plugin/kms"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeClient(t *testing.T, addr string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = addr
	cfg.Timeout = 2 * time.Second
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newAuth(t *testing.T, c *vaultapi.Client, a config.VaultAuth, tls config.VaultTLS) *Authenticator {
	t.Helper()
	auth, err := New(c, a, tls, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = auth.Close() })
	return auth
}

func lookupSelf(ctx context.Context, c *vaultapi.Client) error {
	_, err := c.Auth().Token().LookupSelfWithContext(ctx)
	return err
}

// A real kubernetes auth login needs a kube-apiserver for Vault to review
// the ServiceAccount token, so the request shape is checked against the fake.
func TestKubernetesLoginSendsRoleAndProjectedToken(t *testing.T) {
	fv := fakevault.New(t)
	jwt := writeFile(t, t.TempDir(), "token", "eyJhbGciOiJSUzI1NiJ9.payload.sig\n")
	auth := newAuth(t, fakeClient(t, fv.URL), config.VaultAuth{Method: "kubernetes",
		Kubernetes: &config.KubernetesAuth{Mount: "kube-prod", Role: "trousseau", TokenFile: jwt}}, config.VaultTLS{})
	if err := auth.Do(context.Background(), lookupSelf); err != nil {
		t.Fatal(err)
	}
	got := fv.LastLogin()
	if got.Path != "auth/kube-prod/login" || got.Body["role"] != "trousseau" || got.Body["jwt"] != "eyJhbGciOiJSUzI1NiJ9.payload.sig" || len(got.Body) != 2 {
		t.Fatalf("login request = %s %v, want auth/kube-prod/login with role and the trimmed jwt only", got.Path, keys(got.Body))
	}

	// The kubelet rotates the projected token; the next login sends the new one.
	writeFile(t, filepath.Dir(jwt), "token", "eyJhbGciOiJSUzI1NiJ9.rotated.sig")
	fv.ExpireTokens()
	if err := auth.Do(context.Background(), lookupSelf); err != nil {
		t.Fatal(err)
	}
	if fv.LastLogin().Body["jwt"] != "eyJhbGciOiJSUzI1NiJ9.rotated.sig" {
		t.Fatal("re-login did not re-read the rotated ServiceAccount token")
	}
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

func TestLoginFailuresAreKmsErrorsNamingTheMethod(t *testing.T) {
	const vaultBody = `{"errors":["invalid role or secret ID"]}`
	// Not Vault's format: what a proxy or a wrong address may answer,
	// echoing the login request and so the secret_id.
	const echoBody = `<html>502 Bad Gateway upstream said: {"role_id":"r","secret_id":"s3cr3t-id-value"}</html>`
	for _, tc := range []struct {
		status int
		body   string
		want   kms.Kind
		fix    string
	}{
		{400, vaultBody, kms.PermissionDenied, "invalid role or secret ID: check that provider.vault.auth.approle.roleIDFile and secretIDFile hold a current role_id"}, // approle's answer to a bad secret_id
		{403, vaultBody, kms.PermissionDenied, "check that provider.vault.auth.approle.roleIDFile"},
		{404, vaultBody, kms.NotFound, "run `vault auth enable -path=approle approle`, or correct provider.vault.auth.approle.mount"},
		{429, vaultBody, kms.Unavailable, "Vault is unavailable (HTTP 429)"},
		{503, vaultBody, kms.Unavailable, "Vault is unavailable (HTTP 503)"},
		{502, echoBody, kms.Unavailable, "not Vault's JSON error format, not quoted"},
		{400, echoBody, kms.PermissionDenied, "not Vault's JSON error format, not quoted"},
	} {
		fv := fakevault.New(t)
		dir := t.TempDir()
		auth := newAuth(t, fakeClient(t, fv.URL), config.VaultAuth{Method: "approle", AppRole: &config.AppRoleAuth{
			RoleIDFile: writeFile(t, dir, "role-id", "r"), SecretIDFile: writeFile(t, dir, "secret-id", "s3cr3t-id-value"),
		}}, config.VaultTLS{})
		fv.Inject("/v1/auth/approle/login", fakevault.Fault{Status: tc.status, Body: tc.body})
		err := auth.Do(context.Background(), lookupSelf)
		if kms.KindOf(err) != tc.want {
			t.Fatalf("HTTP %d: got %v (%v), want %v", tc.status, kms.KindOf(err), err, tc.want)
		}
		if !strings.Contains(err.Error(), "approle at auth/approle") || !strings.Contains(err.Error(), fv.URL) {
			t.Errorf("HTTP %d: error does not name the method and address: %v", tc.status, err)
		}
		if !strings.Contains(err.Error(), tc.fix) {
			t.Errorf("HTTP %d: error does not say %q: %v", tc.status, tc.fix, err)
		}
		if strings.Contains(err.Error(), "s3cr3t-id-value") {
			t.Fatalf("HTTP %d: error leaks the secret_id", tc.status)
		}
	}
}

func TestCredentialFileProblemsFailAtStartupNamingTheFile(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good", "value\n")
	for name, file := range map[string]string{
		"quoted":  writeFile(t, dir, "quoted", `"value"`),
		"empty":   writeFile(t, dir, "empty", " \n"),
		"missing": filepath.Join(dir, "missing"),
	} {
		_, err := New(fakeClient(t, "http://127.0.0.1:1"), config.VaultAuth{Method: "approle",
			AppRole: &config.AppRoleAuth{RoleIDFile: good, SecretIDFile: file}}, config.VaultTLS{}, Options{})
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s secret-id file: got %v, want an error naming %s", name, err, file)
		}
	}
	if _, err := New(fakeClient(t, "http://127.0.0.1:1"), config.VaultAuth{Method: "cert"}, config.VaultTLS{}, Options{}); err == nil {
		t.Error("cert auth without a client certificate was accepted")
	}
	if _, err := New(fakeClient(t, "http://127.0.0.1:1"), config.VaultAuth{Method: "ldap"}, config.VaultTLS{}, Options{}); err == nil {
		t.Error("an unknown auth method was accepted")
	}
}

// Field case 11: an auth failure is an error value, and the next call tries
// again, so the plugin recovers without a restart once the credential is fixed.
func TestFieldCase11AuthFailureIsRecoverableWithoutRestart(t *testing.T) {
	fv := fakevault.New(t)
	dir := t.TempDir()
	auth := newAuth(t, fakeClient(t, fv.URL), config.VaultAuth{Method: "approle", AppRole: &config.AppRoleAuth{
		RoleIDFile: writeFile(t, dir, "role-id", "r"), SecretIDFile: writeFile(t, dir, "secret-id", "s"),
	}}, config.VaultTLS{})
	fv.Inject("/v1/auth/approle/login", fakevault.Fault{Status: 400, Body: `{"errors":["invalid role or secret ID"]}`, Times: 1})
	if err := auth.Do(context.Background(), lookupSelf); kms.KindOf(err) != kms.PermissionDenied {
		t.Fatalf("first call: got %v, want permission_denied", err)
	}
	if err := auth.Do(context.Background(), lookupSelf); err != nil {
		t.Fatalf("second call after the credential works again: %v", err)
	}
}
