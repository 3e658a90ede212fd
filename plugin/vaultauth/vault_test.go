package vaultauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"github.com/trousseau-io/trousseau/vault-dev/vaultdevtest"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/trousseau-io/trousseau/plugin/config"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// One TLS dev Vault serves the package (cert auth needs TLS); it starts on
// first use so the fake-only tests run without the Vault binary.
var shared = vaultdevtest.Shared{TLS: true}

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

func devVault(t *testing.T) *vaultdev.Server { return shared.Get(t) }

// pluginClient is configured like the plugin's: the dev CA, optionally a
// client certificate, and no token.
func pluginClient(t *testing.T, srv *vaultdev.Server, certFile, keyFile string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = srv.Addr
	cfg.Timeout = 5 * time.Second
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACert: srv.CACertFile, ClientCert: certFile, ClientKey: keyFile}); err != nil {
		t.Fatal(err)
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// whoami returns the token's lookup-self data as the authenticator's client sees it.
func whoami(t *testing.T, a *Authenticator) map[string]any {
	t.Helper()
	var data map[string]any
	err := a.Do(ctx(t), func(ctx context.Context, c *vaultapi.Client) error {
		s, err := c.Auth().Token().LookupSelfWithContext(ctx)
		if err == nil {
			data = s.Data
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestTokenFileLoginRereadsTheFileWhenTheTokenStopsWorking(t *testing.T) {
	srv := devVault(t)
	root := srv.RootClient()
	create := func() string {
		s, err := root.Auth().Token().CreateWithContext(ctx(t), &vaultapi.TokenCreateRequest{Policies: []string{"default"}, Period: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		return s.Auth.ClientToken
	}
	first, second := create(), create()
	file := writeFile(t, t.TempDir(), "token", first+"\n")
	auth := newAuth(t, pluginClient(t, srv, "", ""), config.VaultAuth{Method: "token", Token: &config.TokenAuth{TokenFile: file}}, config.VaultTLS{})
	if whoami(t, auth)["id"] != first {
		t.Fatal("the authenticator does not use the token from the file")
	}
	if period := whoami(t, auth)["period"]; period == nil {
		t.Fatal("expected a periodic token")
	}

	// An operator rotates the token: writes the new one, revokes the old.
	writeFile(t, filepath.Dir(file), "token", "  "+second+"\n\n")
	if err := root.Auth().Token().RevokeTreeWithContext(ctx(t), first); err != nil {
		t.Fatal(err)
	}
	if whoami(t, auth)["id"] != second {
		t.Fatal("after the old token was revoked the authenticator did not pick up the rewritten file")
	}
}

func TestAppRoleLoginAgainstRealVault(t *testing.T) {
	srv := devVault(t)
	creds, err := vaultdev.Bootstrap(ctx(t), srv.RootClient(), vaultdev.BootstrapOptions{
		KeyName: "approle-login", PolicyName: "approle-login", RoleName: "approle-login", CredentialsDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	auth := newAuth(t, pluginClient(t, srv, "", ""), config.VaultAuth{Method: "approle", AppRole: &config.AppRoleAuth{
		RoleIDFile: creds.RoleIDFile, SecretIDFile: creds.SecretIDFile,
	}}, config.VaultTLS{})
	policies, _ := whoami(t, auth)["policies"].([]any)
	if !slices.Contains(policies, any("approle-login")) {
		t.Fatalf("token policies %v lack the bootstrap policy", policies)
	}
}

func TestCertLoginAgainstRealVault(t *testing.T) {
	srv := devVault(t)
	root := srv.RootClient()
	dir := t.TempDir()
	caPEM, certFile, keyFile := clientCertificate(t, dir, "trousseau-plugin")
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx(t), "cert", &vaultapi.EnableAuthOptions{Type: "cert"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx(t), "auth/cert/certs/trousseau", map[string]any{
		"certificate": caPEM, "token_policies": "default", "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	tls := config.VaultTLS{CAFile: srv.CACertFile, CertFile: certFile, KeyFile: keyFile}
	auth := newAuth(t, pluginClient(t, srv, certFile, keyFile), config.VaultAuth{Method: "cert",
		Cert: &config.CertAuth{Mount: "cert", Name: "trousseau"}}, tls)
	if name := whoami(t, auth)["display_name"]; name != "cert-trousseau" {
		t.Fatalf("display_name = %v, want cert-trousseau (logged in through the cert role)", name)
	}
}

// clientCertificate writes a CA-signed client certificate and key and
// returns the CA PEM that Vault's cert role trusts.
func clientCertificate(t *testing.T, dir, cn string) (caPEM, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trousseau test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	certFile = writeFile(t, dir, "client.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})))
	keyFile = writeFile(t, dir, "client-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return caPEM, certFile, keyFile
}
