package vaultauth

import (
	"context"
	"encoding/json"
	"fmt"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/secretfile"
)

// method obtains a token. Each login re-reads its credential files, so an
// operator who rotates a secret-id or token file needs no restart.
type method interface {
	// describe names the method and mount for logs and errors, never a secret.
	describe() string
	login(ctx context.Context, c *vaultapi.Client) (*vaultapi.Secret, error)
}

func newMethod(a config.VaultAuth, tls config.VaultTLS) (method, error) {
	var m method
	var files []string
	switch a.Method {
	case "token":
		if a.Token == nil {
			return nil, fmt.Errorf("auth.method is token but auth.token is missing: set auth.token.tokenFile")
		}
		m, files = tokenFile{path: a.Token.TokenFile}, []string{a.Token.TokenFile}
	case "approle":
		if a.AppRole == nil {
			return nil, fmt.Errorf("auth.method is approle but auth.approle is missing: set roleIDFile and secretIDFile")
		}
		m = appRole{mount: orDefault(a.AppRole.Mount, config.DefaultAppRoleMount), roleIDFile: a.AppRole.RoleIDFile, secretIDFile: a.AppRole.SecretIDFile}
		files = []string{a.AppRole.RoleIDFile, a.AppRole.SecretIDFile}
	case "kubernetes":
		if a.Kubernetes == nil || a.Kubernetes.Role == "" {
			return nil, fmt.Errorf("auth.method is kubernetes but auth.kubernetes.role is empty: set the Vault role to log in as")
		}
		k := kubernetes{mount: orDefault(a.Kubernetes.Mount, config.DefaultKubernetesMount), role: a.Kubernetes.Role,
			tokenFile: orDefault(a.Kubernetes.TokenFile, "/var/run/secrets/kubernetes.io/serviceaccount/token")}
		m, files = k, []string{k.tokenFile}
	case "cert":
		if tls.CertFile == "" || tls.KeyFile == "" {
			return nil, fmt.Errorf("auth.method is cert but tls.certFile or tls.keyFile is empty: set the client certificate Vault trusts")
		}
		c := cert{mount: config.DefaultCertMount}
		if a.Cert != nil {
			c = cert{mount: orDefault(a.Cert.Mount, config.DefaultCertMount), name: a.Cert.Name}
		}
		m = c
	default:
		return nil, fmt.Errorf("auth.method %q is unknown: use token, approle, kubernetes or cert", a.Method)
	}
	// Fail at startup on an unreadable, empty or quoted credential file
	// rather than on the first apiserver call (field cases 06 and 09).
	for _, f := range files {
		if _, err := secretfile.Read(f); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// credentialError marks a credential file that could not be used, so the
// login error names the file instead of blaming Vault.
type credentialError struct{ error }

func (e credentialError) Unwrap() error { return e.error }

func readCredential(path string) (string, error) {
	v, err := secretfile.Read(path)
	if err != nil {
		return "", credentialError{err}
	}
	return v, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// tokenFile uses a token written by someone else (an agent, an operator).
// "Login" re-reads the file and looks the token up to learn its TTL.
type tokenFile struct{ path string }

func (t tokenFile) describe() string { return "token file " + t.path }

func (t tokenFile) login(ctx context.Context, c *vaultapi.Client) (*vaultapi.Secret, error) {
	tok, err := readCredential(t.path)
	if err != nil {
		return nil, err
	}
	c, err = c.CloneWithHeaders()
	if err != nil {
		return nil, err
	}
	c.SetToken(tok)
	s, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("token lookup returned nothing")
	}
	// A missing or non-numeric ttl reads as 0: a token without expiry.
	n, _ := s.Data["ttl"].(json.Number)
	ttl, _ := n.Int64()
	renewable, _ := s.Data["renewable"].(bool)
	return &vaultapi.Secret{Auth: &vaultapi.SecretAuth{ClientToken: tok, LeaseDuration: int(ttl), Renewable: renewable}}, nil
}

type appRole struct{ mount, roleIDFile, secretIDFile string }

func (a appRole) describe() string { return "approle at auth/" + a.mount }

func (a appRole) login(ctx context.Context, c *vaultapi.Client) (*vaultapi.Secret, error) {
	roleID, err := readCredential(a.roleIDFile)
	if err != nil {
		return nil, err
	}
	secretID, err := readCredential(a.secretIDFile)
	if err != nil {
		return nil, err
	}
	return c.Logical().WriteWithContext(ctx, "auth/"+a.mount+"/login", map[string]any{"role_id": roleID, "secret_id": secretID})
}

// kubernetes logs in with a projected ServiceAccount token. The kubelet
// rotates that file, so it is read on every login.
type kubernetes struct{ mount, role, tokenFile string }

func (k kubernetes) describe() string { return "kubernetes role " + k.role + " at auth/" + k.mount }

func (k kubernetes) login(ctx context.Context, c *vaultapi.Client) (*vaultapi.Secret, error) {
	jwt, err := readCredential(k.tokenFile)
	if err != nil {
		return nil, err
	}
	return c.Logical().WriteWithContext(ctx, "auth/"+k.mount+"/login", map[string]any{"role": k.role, "jwt": jwt})
}

// cert proves identity with the TLS client certificate configured on the
// client; the body only picks the Vault cert role.
type cert struct{ mount, name string }

func (c cert) describe() string { return "cert at auth/" + c.mount }

func (c cert) login(ctx context.Context, client *vaultapi.Client) (*vaultapi.Secret, error) {
	body := map[string]any{}
	if c.name != "" {
		body["name"] = c.name
	}
	return client.Logical().WriteWithContext(ctx, "auth/"+c.mount+"/login", body)
}
