package vaultdev

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

//go:embed policy.hcl
var policyHCL string

var policyTemplate = template.Must(template.New("policy.hcl").Parse(policyHCL))

// BootstrapOptions configures Bootstrap. Zero values take the defaults noted.
type BootstrapOptions struct {
	// TransitMount is the Transit mount path; "transit" by default.
	TransitMount string
	// KeyName is the Transit key; "kubernetes" by default.
	KeyName string
	// PolicyName is the plugin's policy; "trousseau" by default.
	PolicyName string
	// AppRoleMount is the AppRole auth mount; "approle" by default.
	AppRoleMount string
	// RoleName is the AppRole role; "trousseau" by default.
	RoleName string
	// TokenTTL and TokenMaxTTL bound the tokens the role issues; Vault's
	// defaults when zero. Tests shorten them to exercise renewal and re-login.
	TokenTTL, TokenMaxTTL time.Duration
	// BoundCIDRs, when set, restricts where the secret-id may log in from
	// and where the issued token may be used (the local appliance binds
	// 127.0.0.1/32); unbound when empty, as a plugin pod's address is not
	// known in advance.
	BoundCIDRs []string
	// CredentialsDir receives role-id and secret-id (0600). It must exist.
	CredentialsDir string
}

// Credentials are the files the plugin's AppRole auth reads.
type Credentials struct {
	RoleIDFile   string
	SecretIDFile string
	PolicyName   string
}

func (o *BootstrapOptions) defaults() {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&o.TransitMount, "transit")
	def(&o.KeyName, "kubernetes")
	def(&o.PolicyName, "trousseau")
	def(&o.AppRoleMount, "approle")
	def(&o.RoleName, "trousseau")
}

// Policy renders the least-privilege plugin policy (policy.hcl) for one key.
func Policy(mount, key string) (string, error) {
	var b bytes.Buffer
	if err := policyTemplate.Execute(&b, struct{ Mount, Key string }{strings.Trim(mount, "/"), key}); err != nil {
		return "", fmt.Errorf("render policy.hcl: %w", err)
	}
	return b.String(), nil
}

// Bootstrap prepares a Vault for the plugin: the Transit mount and an
// aes256-gcm96 key, the least-privilege policy, an AppRole role bound to it,
// and the role-id and secret-id files. Running it again changes nothing but
// issuing a fresh secret-id.
func Bootstrap(ctx context.Context, root *vaultapi.Client, opts BootstrapOptions) (*Credentials, error) {
	opts.defaults()
	if opts.CredentialsDir == "" {
		return nil, fmt.Errorf("vaultdev: BootstrapOptions.CredentialsDir is empty: give a directory for role-id and secret-id")
	}
	if err := enableEngine(ctx, root, opts.TransitMount, "transit"); err != nil {
		return nil, err
	}
	if err := createKey(ctx, root, opts.TransitMount, opts.KeyName); err != nil {
		return nil, err
	}
	policy, err := Policy(opts.TransitMount, opts.KeyName)
	if err != nil {
		return nil, err
	}
	if err := root.Sys().PutPolicyWithContext(ctx, opts.PolicyName, policy); err != nil {
		return nil, fmt.Errorf("write policy %s: %w", opts.PolicyName, err)
	}
	if err := enableAuth(ctx, root, opts.AppRoleMount, "approle"); err != nil {
		return nil, err
	}
	rolePath := "auth/" + opts.AppRoleMount + "/role/" + opts.RoleName
	// Without the default policy the token holds exactly policy.hcl:
	// no cubbyhole, response wrapping or identity lookups it never uses.
	// An empty list, not null, so a re-run without BoundCIDRs unbinds.
	cidrs := append([]string{}, opts.BoundCIDRs...)
	role := map[string]any{"token_policies": []string{opts.PolicyName}, "token_no_default_policy": true,
		"secret_id_bound_cidrs": cidrs, "token_bound_cidrs": cidrs}
	if opts.TokenTTL > 0 {
		role["token_ttl"] = opts.TokenTTL.String()
	}
	if opts.TokenMaxTTL > 0 {
		role["token_max_ttl"] = opts.TokenMaxTTL.String()
	}
	if _, err := root.Logical().WriteWithContext(ctx, rolePath, role); err != nil {
		return nil, fmt.Errorf("write AppRole role %s: %w", rolePath, err)
	}
	roleID, err := root.Logical().ReadWithContext(ctx, rolePath+"/role-id")
	if err != nil || roleID == nil {
		return nil, fmt.Errorf("read role-id of %s: %v", rolePath, orNotFound(err))
	}
	secretID, err := root.Logical().WriteWithContext(ctx, rolePath+"/secret-id", nil)
	if err != nil || secretID == nil {
		return nil, fmt.Errorf("issue secret-id for %s: %v", rolePath, orNotFound(err))
	}
	creds := &Credentials{
		RoleIDFile:   filepath.Join(opts.CredentialsDir, "role-id"),
		SecretIDFile: filepath.Join(opts.CredentialsDir, "secret-id"),
		PolicyName:   opts.PolicyName,
	}
	if err := writeSecret(creds.RoleIDFile, roleID.Data["role_id"]); err != nil {
		return nil, err
	}
	previous, _ := os.ReadFile(creds.SecretIDFile)
	if err := writeSecret(creds.SecretIDFile, secretID.Data["secret_id"]); err != nil {
		return nil, err
	}
	// The secret-id just replaced would otherwise stay valid forever (no
	// TTL: the plugin re-reads the file at every login and must keep
	// working on a long-lived stack), so a re-run leaves exactly one.
	// Vault answers success for a secret-id it does not know.
	if old := strings.TrimSpace(string(previous)); old != "" {
		if _, err := root.Logical().WriteWithContext(ctx, rolePath+"/secret-id/destroy", map[string]any{"secret_id": old}); err != nil {
			return nil, fmt.Errorf("destroy the replaced secret-id of %s: %w", rolePath, err)
		}
	}
	return creds, nil
}

// Rotate rotates a Transit key and returns its new latest version.
func Rotate(ctx context.Context, root *vaultapi.Client, mount, key string) (int, error) {
	if _, err := root.Logical().WriteWithContext(ctx, mount+"/keys/"+key+"/rotate", nil); err != nil {
		return 0, fmt.Errorf("rotate transit key %s at mount %s: %w", key, mount, err)
	}
	s, err := root.Logical().ReadWithContext(ctx, mount+"/keys/"+key)
	if err != nil || s == nil {
		return 0, fmt.Errorf("read transit key %s at mount %s after rotation: %v", key, mount, orNotFound(err))
	}
	n, ok := s.Data["latest_version"].(json.Number)
	if !ok {
		return 0, fmt.Errorf("transit key %s at mount %s: latest_version is %T, want a number", key, mount, s.Data["latest_version"])
	}
	v, err := n.Int64()
	return int(v), err
}

func enableEngine(ctx context.Context, root *vaultapi.Client, path, kind string) error {
	mounts, err := root.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list secrets engines: %w", err)
	}
	if m, ok := mounts[strings.Trim(path, "/")+"/"]; ok {
		if m.Type != kind {
			return fmt.Errorf("mount %s is a %s engine, want %s: pick another mount path", path, m.Type, kind)
		}
		return nil
	}
	if err := root.Sys().MountWithContext(ctx, path, &vaultapi.MountInput{Type: kind}); err != nil {
		return fmt.Errorf("enable %s at %s: %w", kind, path, err)
	}
	return nil
}

func enableAuth(ctx context.Context, root *vaultapi.Client, path, kind string) error {
	auths, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth methods: %w", err)
	}
	if m, ok := auths[strings.Trim(path, "/")+"/"]; ok {
		if m.Type != kind {
			return fmt.Errorf("auth mount %s is %s, want %s: pick another mount path", path, m.Type, kind)
		}
		return nil
	}
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, path, &vaultapi.EnableAuthOptions{Type: kind}); err != nil {
		return fmt.Errorf("enable %s auth at %s: %w", kind, path, err)
	}
	return nil
}

func createKey(ctx context.Context, root *vaultapi.Client, mount, key string) error {
	existing, err := root.Logical().ReadWithContext(ctx, mount+"/keys/"+key)
	if err != nil {
		return fmt.Errorf("read transit key %s at mount %s: %w", key, mount, err)
	}
	if existing != nil {
		return nil
	}
	if _, err := root.Logical().WriteWithContext(ctx, mount+"/keys/"+key, map[string]any{"type": "aes256-gcm96"}); err != nil {
		return fmt.Errorf("create transit key %s at mount %s: %w", key, mount, err)
	}
	return nil
}

func writeSecret(path string, v any) error {
	s, ok := v.(string)
	if !ok || s == "" {
		return fmt.Errorf("vault returned no value for %s", filepath.Base(path))
	}
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// WriteFile keeps the mode of an existing file; credentials must be 0600.
	return os.Chmod(path, 0o600)
}

func orNotFound(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("not found")
}
