package vaultdev

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
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
			if _, err := Bootstrap(ctx, root, opts); err != nil {
				t.Fatalf("second Bootstrap is not idempotent: %v", err)
			}
			for _, f := range []string{creds.RoleIDFile, creds.SecretIDFile} {
				st, err := os.Stat(f)
				if err != nil || st.Mode().Perm() != 0o600 {
					t.Fatalf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
				}
			}

			// The role logs in and its policy is exactly the least privilege.
			roleID, _ := os.ReadFile(creds.RoleIDFile)
			secretID, _ := os.ReadFile(creds.SecretIDFile)
			login, err := root.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{
				"role_id": strings.TrimSpace(string(roleID)), "secret_id": strings.TrimSpace(string(secretID))})
			if err != nil {
				t.Fatal(err)
			}
			plugin, _ := root.Clone()
			plugin.SetToken(login.Auth.ClientToken)
			for path, want := range map[string]string{
				"transit/encrypt/kubernetes": "update", "transit/decrypt/kubernetes": "update", "transit/keys/kubernetes": "read",
				"transit/encrypt/other": "deny", "transit/keys/kubernetes/rotate": "deny",
			} {
				caps, err := plugin.Sys().CapabilitiesSelfWithContext(ctx, path)
				if err != nil || strings.Join(caps, ",") != want {
					t.Errorf("capabilities on %s = %v, %v; want %s", path, caps, err, want)
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
