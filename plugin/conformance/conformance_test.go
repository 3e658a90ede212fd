package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmstypes "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/server"
	"github.com/trousseau-io/trousseau/plugin/transit"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

var secrets = schema.GroupResource{Resource: "secrets"}

// stack is a dev Vault, the plugin serving on a socket, and the apiserver's
// transformer for Secrets loaded from our EncryptionConfiguration.
type stack struct {
	vault       *vaultdev.Server
	socket      string
	creds       *vaultdev.Credentials
	plugin      *server.Server
	provider    *transit.Provider
	transformer value.Transformer
	health      func() error
	key         string
}

func newStack(t testing.TB, key string) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()

	v, err := vaultdev.Start(ctx, vaultdev.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	creds, err := vaultdev.Bootstrap(ctx, v.RootClient(), vaultdev.BootstrapOptions{KeyName: key, CredentialsDir: dir})
	if err != nil {
		t.Fatal(err)
	}

	provider, err := transit.New(ctx, config.Vault{
		Address: v.Addr, TransitMount: "transit", KeyName: key,
		RequestTimeout: config.Duration{Duration: 2 * time.Second},
		Auth: config.VaultAuth{Method: "approle", AppRole: &config.AppRoleAuth{
			Mount: "approle", RoleIDFile: creds.RoleIDFile, SecretIDFile: creds.SecretIDFile,
		}},
	}, transit.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = provider.Close() })
	srv, err := server.New(server.Options{
		Provider: provider, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(), RefreshInterval: 20 * time.Second, ShutdownGrace: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are limited to ~108 bytes; t.TempDir() can be longer.
	sockDir, err := os.MkdirTemp("", "trousseau-conf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	sockPath := filepath.Join(sockDir, controlplane.SocketFile)
	sock, err := server.Listen(sockPath, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("plugin Serve: %v", err)
		}
	})
	srv.RefreshStatus(ctx)
	if snap := srv.Snapshot(); !snap.Healthy() {
		t.Fatalf("plugin not healthy against a bootstrapped dev Vault: %s", snap.Healthz)
	}

	cfgYAML, err := controlplane.EncryptionConfig(controlplane.KMSFirst, sockPath)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, controlplane.EncryptionConfigFile)
	if err := os.WriteFile(cfgPath, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := encryptionconfig.LoadEncryptionConfig(ctx, cfgPath, false, "conformance-apiserver")
	if err != nil {
		t.Fatalf("the apiserver rejected our EncryptionConfiguration: %v", err)
	}
	tr, ok := loaded.Transformers[secrets]
	if !ok {
		t.Fatalf("no transformer for secrets in %v", loaded.Transformers)
	}
	if len(loaded.HealthChecks) != 1 {
		t.Fatalf("want one kms-providers health check, got %d", len(loaded.HealthChecks))
	}
	check := loaded.HealthChecks[0]
	if check.Name() != "kms-providers" {
		t.Fatalf("health check is %q, want kms-providers", check.Name())
	}
	return &stack{
		vault: v, plugin: srv, transformer: tr, key: key, socket: sockPath, creds: creds, provider: provider,
		health: func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/healthz", nil)
			return check.Check(req)
		},
	}
}

const prefix = "k8s:enc:kms:v2:" + controlplane.ProviderName + ":"

// envelope decodes what the apiserver would write to etcd and checks it with
// the apiserver's own validation.
func envelope(t *testing.T, stored []byte) *kmstypes.EncryptedObject {
	t.Helper()
	if !bytes.HasPrefix(stored, []byte(prefix)) {
		t.Fatalf("stored value does not start with %q: %q", prefix, stored[:min(len(stored), 40)])
	}
	var obj kmstypes.EncryptedObject
	if err := proto.Unmarshal(stored[len(prefix):], &obj); err != nil {
		t.Fatalf("decode EncryptedObject: %v", err)
	}
	if err := kmsv2.ValidateEncryptedObject(&obj); err != nil {
		t.Fatalf("the apiserver rejects our envelope: %v", err)
	}
	return &obj
}

// waitForKeyID polls the apiserver's health check (which drives its
// Status→Encrypt handshake) until new writes carry want.
func waitForKeyID(t *testing.T, s *stack, want string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(90 * time.Second)
	for {
		_ = s.health()
		out, err := s.transformer.TransformToStorage(ctx, []byte("probe"), value.DefaultContext("probe"))
		if err == nil && envelope(t, out).KeyID == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the apiserver never wrote with key_id %s (last error: %v)", want, err)
		}
		time.Sleep(time.Second)
	}
}

func TestApiserverClientRoundTripsSecretSizedPayloads(t *testing.T) {
	s := newStack(t, "round-trip")
	ctx := context.Background()
	keyID := s.plugin.Snapshot().KeyID
	for _, size := range []int{1, 1 << 10, 1 << 20} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			plain := make([]byte, size)
			if _, err := rand.Read(plain); err != nil {
				t.Fatal(err)
			}
			dataCtx := value.DefaultContext("/registry/secrets/default/s" + fmt.Sprint(size))
			stored, err := s.transformer.TransformToStorage(ctx, plain, dataCtx)
			if err != nil {
				t.Fatalf("TransformToStorage: %v", err)
			}
			obj := envelope(t, stored)
			if obj.KeyID != keyID {
				t.Errorf("envelope key_id %q, plugin Status key_id %q", obj.KeyID, keyID)
			}
			if size >= 16 && bytes.Contains(stored, plain[:16]) {
				t.Error("stored bytes contain the plaintext")
			}
			got, stale, err := s.transformer.TransformFromStorage(ctx, stored, dataCtx)
			if err != nil {
				t.Fatalf("TransformFromStorage: %v", err)
			}
			if stale {
				t.Error("fresh data reported stale")
			}
			if !bytes.Equal(got, plain) {
				t.Error("round trip changed the data")
			}
		})
	}
}

func TestApiserverHealthCheckNamesVaultOutageAndRecovers(t *testing.T) {
	s := newStack(t, "health")
	if err := s.health(); err != nil {
		t.Fatalf("kms-providers health check fails on a healthy stack: %v", err)
	}
	if err := s.vault.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	t.Cleanup(func() {
		if !thawed {
			_ = s.vault.Thaw()
		}
	})
	s.plugin.RefreshStatus(context.Background())
	reason := s.plugin.Snapshot().Healthz
	if reason == "ok" {
		t.Fatal("plugin still reports ok while Vault does not answer")
	}
	if !strings.Contains(reason, s.vault.Addr) && !strings.Contains(reason, strings.TrimPrefix(s.vault.Addr, "http://")) {
		t.Errorf("healthz reason %q does not name the Vault address %s", reason, s.vault.Addr)
	}
	// The apiserver caches a healthy answer for 20 s; poll until it sees ours.
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := s.health()
		if err != nil {
			if !strings.Contains(err.Error(), "vault-transit") {
				t.Errorf("apiserver health error %q does not carry the plugin's reason", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the apiserver's kms-providers check never failed during the outage")
		}
		time.Sleep(time.Second)
	}

	if err := s.vault.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	s.plugin.RefreshStatus(context.Background())
	deadline = time.Now().Add(60 * time.Second)
	for s.health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("kms-providers check did not recover after Vault came back: %v", s.health())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestApiserverSeesRotationAsStaleAndWritesNewKeyID(t *testing.T) {
	s := newStack(t, "rotation")
	ctx := context.Background()
	dataCtx := value.DefaultContext("/registry/secrets/default/rotated")
	old, err := s.transformer.TransformToStorage(ctx, []byte("before rotation"), dataCtx)
	if err != nil {
		t.Fatal(err)
	}
	oldKeyID := envelope(t, old).KeyID

	if _, err := vaultdev.Rotate(ctx, s.vault.RootClient(), "transit", s.key); err != nil {
		t.Fatal(err)
	}
	s.plugin.RefreshStatus(ctx)
	newKeyID := s.plugin.Snapshot().KeyID
	if newKeyID == oldKeyID {
		t.Fatalf("plugin Status key_id did not change after rotation: %s", newKeyID)
	}
	waitForKeyID(t, s, newKeyID)

	got, stale, err := s.transformer.TransformFromStorage(ctx, old, dataCtx)
	if err != nil {
		t.Fatalf("data written before rotation no longer reads: %v", err)
	}
	if string(got) != "before rotation" {
		t.Errorf("read back %q", got)
	}
	if !stale {
		t.Error("data on the old key_id is not reported stale, so storage migration would skip it")
	}
}
