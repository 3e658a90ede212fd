// Package vaultdevtest shares one dev Vault among the tests of a package. It
// starts on first use, so tests that need no Vault run without the binary,
// and stops when the package's TestMain calls Stop.
package vaultdevtest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// Shared is one lazily started dev Vault. Declare it as a package variable.
type Shared struct {
	// TLS serves HTTPS (cert auth needs it).
	TLS bool

	once sync.Once
	srv  *vaultdev.Server
	dir  string
	err  error
}

// Get starts the Vault on first use and fails the test if it cannot start.
func (s *Shared) Get(t testing.TB) *vaultdev.Server {
	t.Helper()
	s.once.Do(func() {
		s.dir, s.err = os.MkdirTemp("", "trousseau-test-vault-")
		if s.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		s.srv, s.err = vaultdev.Start(ctx, vaultdev.Options{Dir: s.dir, TLS: s.TLS})
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.srv
}

// Stop stops the Vault if it was started and removes its directory. Call it
// from TestMain after m.Run.
func (s *Shared) Stop() {
	if s.srv != nil {
		s.srv.Stop()
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
