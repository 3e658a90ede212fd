package vaultdev

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

func TestStartBootstrapRotateStop(t *testing.T) {
	for _, tlsMode := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "tls"}[tlsMode]
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			dir := t.TempDir()
			srv, err := Start(ctx, Options{Dir: dir, TLS: tlsMode})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			if tlsMode != strings.HasPrefix(srv.Addr, "https://127.0.0.1:") || (tlsMode && srv.CACertFile == "") {
				t.Fatalf("Addr %s, CACertFile %q do not match TLS=%v", srv.Addr, srv.CACertFile, tlsMode)
			}
			root := srv.RootClient()

			credsDir := t.TempDir()
			opts := BootstrapOptions{CredentialsDir: credsDir, TokenTTL: time.Minute, TokenMaxTTL: 2 * time.Minute}
			creds, err := Bootstrap(ctx, root, opts)
			if err != nil {
				t.Fatal(err)
			}
			firstSecretID := readTrimmed(t, creds.SecretIDFile)
			if _, err := Bootstrap(ctx, root, opts); err != nil {
				t.Fatalf("second Bootstrap is not idempotent: %v", err)
			}
			for _, f := range []string{creds.RoleIDFile, creds.SecretIDFile} {
				st, err := os.Stat(f)
				if err != nil || st.Mode().Perm() != 0o600 {
					t.Fatalf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
				}
			}
			roleID := readTrimmed(t, creds.RoleIDFile)
			if _, err := appRoleLogin(ctx, root, roleID, firstSecretID); err == nil {
				t.Fatal("the secret-id replaced by the second Bootstrap still logs in; want it destroyed")
			}

			// The role logs in and its token holds exactly the least privilege:
			// policy.hcl without Vault's default policy.
			login, err := appRoleLogin(ctx, root, roleID, readTrimmed(t, creds.SecretIDFile))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(login.Auth.Policies, ","); got != "trousseau" {
				t.Errorf("token policies = %s; want only trousseau (no default policy)", got)
			}
			plugin, _ := root.Clone()
			plugin.SetToken(login.Auth.ClientToken)
			for path, want := range map[string]string{
				"transit/encrypt/kubernetes": "update", "transit/decrypt/kubernetes": "update", "transit/keys/kubernetes": "read",
				"auth/token/lookup-self": "read", "auth/token/renew-self": "update", "sys/capabilities-self": "update",
				"transit/encrypt/other": "deny", "transit/keys/kubernetes/rotate": "deny",
				"cubbyhole/x": "deny", "sys/wrapping/wrap": "deny", "auth/token/revoke-self": "deny",
			} {
				caps, err := plugin.Sys().CapabilitiesSelfWithContext(ctx, path)
				if err != nil || strings.Join(caps, ",") != want {
					t.Errorf("capabilities on %s = %v, %v; want %s", path, caps, err, want)
				}
			}
			if _, err := plugin.Auth().Token().RenewSelfWithContext(ctx, 0); err != nil {
				t.Errorf("the plugin's token cannot renew itself: %v", err)
			}

			// BoundCIDRs is enforced: bound elsewhere, a login from 127.0.0.1 is
			// refused; bound to loopback, it succeeds.
			for _, c := range []struct {
				cidr string
				ok   bool
			}{{"127.0.0.2/32", false}, {"127.0.0.1/32", true}} {
				bound := opts
				bound.BoundCIDRs = []string{c.cidr}
				if _, err := Bootstrap(ctx, root, bound); err != nil {
					t.Fatal(err)
				}
				_, err := appRoleLogin(ctx, root, roleID, readTrimmed(t, creds.SecretIDFile))
				if (err == nil) != c.ok {
					t.Errorf("login from 127.0.0.1 with BoundCIDRs %s: err = %v, want success %v", c.cidr, err, c.ok)
				}
			}

			if v, err := Rotate(ctx, root, "transit", "kubernetes"); err != nil || v != 2 {
				t.Fatalf("Rotate = %d, %v; want 2", v, err)
			}

			srv.Stop()
			log, err := os.ReadFile(srv.LogFile)
			if err != nil || !strings.Contains(string(log), "[redacted]") {
				t.Fatalf("vault.log should show the redacted root token line: %v", err)
			}
			if strings.Contains(string(log), srv.rootToken) {
				t.Fatal("vault.log contains the root token")
			}
			if _, err := root.Sys().HealthWithContext(ctx); err == nil {
				t.Fatal("Vault still answers after Stop")
			}
		})
	}
}

func TestStartFailureQuotesTheLogAndNamesTheFix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	fake := dir + "/vault"
	script := "#!/bin/sh\necho 'Error initializing listener of type tcp: listen tcp4: address already in use' >&2\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TROUSSEAU_VAULT_BIN", fake)
	_, err := Start(ctx, Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "fix:") {
		t.Fatalf("got %v, want an error quoting the last lines of vault.log and a fix", err)
	}
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func appRoleLogin(ctx context.Context, root *vaultapi.Client, roleID, secretID string) (*vaultapi.Secret, error) {
	return root.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
}
