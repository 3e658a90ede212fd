package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// startVault runs the dev Vault detached, so it outlives this command, and
// bootstraps Transit, the policy and the plugin's AppRole credentials into
// .trousseau/vault. It returns Vault's address.
func (l *Local) startVault(ctx context.Context) (string, error) {
	if err := os.MkdirAll(l.vaultDir(), 0o700); err != nil {
		return "", err
	}
	srv, err := vaultdev.Start(ctx, vaultdev.Options{
		Dir:      l.vaultDir(),
		Detached: &vaultdev.Detached{PIDFile: l.pidFile(vaultName), RootTokenFile: l.rootTokenFile()},
	})
	if err != nil {
		return "", fmt.Errorf("start the dev Vault: %w", err)
	}
	if _, err := vaultdev.Bootstrap(ctx, srv.RootClient(), vaultdev.BootstrapOptions{
		TransitMount: transitMount, KeyName: transitKey, CredentialsDir: l.vaultDir(),
		// Everything runs on loopback here, so a copied secret-id or token is
		// useless from anywhere else. The plugin renews its token and logs in
		// again before the max TTL, so short lifetimes cost nothing.
		BoundCIDRs: []string{"127.0.0.1/32"}, TokenTTL: time.Hour, TokenMaxTTL: 24 * time.Hour,
	}); err != nil {
		srv.Stop()
		return "", fmt.Errorf("bootstrap the dev Vault (Transit, policy, AppRole): %w", err)
	}
	return srv.Addr, nil
}

// VaultRoot implements runtime.Runtime with the root token file Start wrote.
func (l *Local) VaultRoot(ctx context.Context) (*vaultapi.Client, error) {
	s, err := l.loadState()
	if err != nil {
		return nil, err
	}
	if s.VaultAddr == "" || l.pidOf(vaultName) == 0 {
		return nil, fmt.Errorf("the dev Vault is not running: start the stack with `go tool mage demo`")
	}
	token, err := os.ReadFile(l.rootTokenFile())
	if err != nil {
		return nil, fmt.Errorf("read the dev Vault root token: %w (run `go tool mage down` and `go tool mage demo` to start over)", err)
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = s.VaultAddr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearNamespace()
	c.SetToken(strings.TrimSpace(string(token)))
	return c, nil
}

// vaultLog is where vaultdev writes Vault's log.
func (l *Local) vaultLog() string { return filepath.Join(l.vaultDir(), "vault.log") }
