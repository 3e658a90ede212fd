package kind

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/tools"
	"github.com/trousseau-io/trousseau/charts"
	"github.com/trousseau-io/trousseau/plugin/config"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// persistentVault runs the real Vault binary with file storage, as
// charts/vault-dev's persistent mode does, on a loopback port.
type persistentVault struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
}

// startPersistentVault runs one in a fresh directory until the test ends.
func startPersistentVault(t *testing.T) *persistentVault {
	t.Helper()
	bin, err := tools.Vault.Path()
	if err != nil {
		t.Fatal(err)
	}
	v := &persistentVault{t: t, bin: bin, dir: t.TempDir(), addr: freeLoopbackAddr(t)}
	v.start()
	t.Cleanup(v.stop)
	return v
}

func (v *persistentVault) start() {
	v.t.Helper()
	cfg := fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address = %q
  tls_disable = true
}
disable_mlock = true
`, filepath.Join(v.dir, "data"), strings.TrimPrefix(v.addr, "http://"))
	cfgFile := filepath.Join(v.dir, "vault.hcl")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		v.t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(v.dir, "vault.log"))
	if err != nil {
		v.t.Fatal(err)
	}
	v.cmd = exec.Command(v.bin, "server", "-config="+cfgFile)
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	v.cmd.Env = []string{"HOME=" + v.dir, "PATH=" + os.Getenv("PATH")}
	if err := v.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	c := v.client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Sys().SealStatus(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(v.dir, "vault.log"))
			v.t.Fatalf("vault did not answer within 30s:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (v *persistentVault) stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	_ = v.cmd.Wait()
	v.cmd = nil
}

func (v *persistentVault) client() *vaultapi.Client {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.addr
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		v.t.Fatal(err)
	}
	c.ClearToken()
	return c
}

func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// TestPersistentVaultSurvivesRestartWithHostUnsealMaterial is the
// persistent vault-dev mode's bootstrap against a real Vault: initialise
// once, keep the material on the host (0600), unseal after a restart, and
// the Transit key written before the restart is still there.
func TestPersistentVaultSurvivesRestartWithHostUnsealMaterial(t *testing.T) {
	v := startPersistentVault(t)
	dir := v.dir
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	initFile := filepath.Join(dir, "state", "init.json")

	c := v.client()
	token, err := initAndUnseal(ctx, c, initFile)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(initFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("unseal material %s: %v, mode %v; want 0600", initFile, err, fi.Mode())
	}
	c.SetToken(token)
	if err := c.Sys().Mount(transitMount, &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write(transitMount+"/keys/"+transitKey, map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatal(err)
	}
	// A second call on an unsealed Vault is a no-op that returns the same token.
	if again, err := initAndUnseal(ctx, v.client(), initFile); err != nil || again != token {
		t.Fatalf("idempotent call: %v (same token: %v)", err, again == token)
	}

	v.stop()
	v.start()
	st, err := v.client().Sys().SealStatus()
	if err != nil || !st.Sealed {
		t.Fatalf("a restarted file-storage Vault must come back sealed: %+v %v", st, err)
	}
	c = v.client()
	if _, err := initAndUnseal(ctx, c, initFile); err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	key, err := c.Logical().Read(transitMount + "/keys/" + transitKey)
	if err != nil || key == nil {
		t.Fatalf("the Transit key did not survive the restart: %v", err)
	}

	// Losing the material is reported with the consequence and the fix.
	if err := os.Remove(initFile); err != nil {
		t.Fatal(err)
	}
	v.stop()
	v.start()
	_, err = initAndUnseal(ctx, v.client(), initFile)
	if err == nil || !strings.Contains(err.Error(), "cannot be recovered") || strings.Contains(err.Error(), token) {
		t.Fatalf("want a clear unrecoverable error that does not leak the token, got %v", err)
	}
}

// TestVaultRootGoesThroughTheAPIServerServiceProxy: the kind runtime talks
// to Vault only through the apiserver's service proxy. A fake apiserver
// (TLS, bearer token required) strips the proxy prefix and forwards to a
// real Vault, proving the Vault client keeps the prefix on every request
// and the appliance's init/unseal and root client work over it.
func TestVaultRootGoesThroughTheAPIServerServiceProxy(t *testing.T) {
	v := startPersistentVault(t)
	dir := v.dir

	k := &Kind{opts: ConfigOptions{StateDir: filepath.Join(dir, "kind")}, vaultMode: vaultPersistent}
	proxied := fakeAPIServerProxyingVault(t, k, v.addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := k.vaultClient()
	if err != nil {
		t.Fatal(err)
	}
	token, err := initAndUnseal(ctx, c, k.path("vault", "init.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := writePrivateFile(k.rootTokenFile(), []byte(token)); err != nil {
		t.Fatal(err)
	}
	root, err := k.VaultRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("root token lookup through the proxy: %v", err)
	}
	if proxied.Load() < 3 {
		t.Fatalf("only %d requests went through the service proxy", proxied.Load())
	}
}

// fakeAPIServerProxyingVault serves the apiserver's Vault service-proxy
// path over TLS with a required bearer token, forwarding to vaultAddr, and
// writes k's kubeconfig for it. It counts proxied requests.
func fakeAPIServerProxyingVault(t *testing.T, k *Kind, vaultAddr string) *atomic.Int32 {
	t.Helper()
	target, err := url.Parse(vaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "/api/v1/namespaces/" + VaultNamespace + "/services/http:" + VaultRelease + ":8200/proxy"
	var proxied atomic.Int32
	fwd := httputil.NewSingleHostReverseProxy(target)
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-token" {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		if !strings.HasPrefix(r.URL.Path, prefix+"/v1/") {
			http.Error(w, "not the vault service proxy: "+r.URL.Path, http.StatusNotFound)
			return
		}
		proxied.Add(1)
		r.URL.Path = strings.TrimPrefix(r.URL.Path, prefix)
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(api.Close)
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: kind, cluster: {server: %q, certificate-authority-data: %s}}]
users: [{name: admin, user: {token: admin-token}}]
contexts: [{name: kind, context: {cluster: kind, user: admin}}]
current-context: kind
`, api.URL, base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw})))
	if err := os.MkdirAll(k.opts.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.Kubeconfig(), []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return &proxied
}

// TestBootstrapVaultMatchesTheChartsKubernetesAuth runs the kind flow's
// Vault bootstrap against a real dev Vault (through the service-proxy
// path) and checks that the Kubernetes auth role it writes admits exactly
// what the chart deploys: its ServiceAccount, namespace and token audience,
// with the least-privilege Transit policy.
func TestBootstrapVaultMatchesTheChartsKubernetesAuth(t *testing.T) {
	dir := t.TempDir()
	srv, err := vaultdev.Start(context.Background(), vaultdev.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	k := &Kind{opts: ConfigOptions{StateDir: filepath.Join(dir, "kind")}, vaultMode: vaultDev}
	fakeAPIServerProxyingVault(t, k, srv.Addr)
	if err := writePrivateFile(k.rootTokenFile(), []byte(srv.RootClient().Token())); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.bootstrapVault(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.bootstrapVault(ctx); err != nil {
		t.Fatalf("bootstrap must be idempotent (Up on a running cluster): %v", err)
	}

	raw, err := charts.PluginConfig(pluginValues("sha256:x", 1000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	ka := cfg.Provider.Vault.Auth.Kubernetes
	role, err := srv.RootClient().Logical().Read("auth/" + ka.Mount + "/role/" + ka.Role)
	if err != nil || role == nil {
		t.Fatalf("the chart logs in with role %s at mount %s, which bootstrap did not create: %v", ka.Role, ka.Mount, err)
	}
	ds := renderDaemonSet(t, pluginValues("sha256:x", 1000, 1000))
	var audience string
	for _, vol := range ds.Spec.Template.Spec.Volumes {
		if vol.Projected != nil && vol.Projected.Sources[0].ServiceAccountToken != nil {
			audience = vol.Projected.Sources[0].ServiceAccountToken.Audience
		}
	}
	want := map[string]string{
		"bound_service_account_names":      ds.Spec.Template.Spec.ServiceAccountName,
		"bound_service_account_namespaces": ds.Namespace,
		"audience":                         audience,
		"token_policies":                   "trousseau",
	}
	for field, w := range want {
		got := fmt.Sprint(role.Data[field])
		if !strings.Contains(got, w) || w == "" {
			t.Errorf("role %s: %s = %s, the chart needs %q", ka.Role, field, got, w)
		}
	}
	policy, err := srv.RootClient().Sys().GetPolicy("trousseau")
	grantsCreate := false
	for _, l := range strings.Split(policy, "\n") {
		grantsCreate = grantsCreate || (strings.Contains(l, "capabilities") && strings.Contains(l, "create"))
	}
	if err != nil || !strings.Contains(policy, transitMount+"/encrypt/"+transitKey) || grantsCreate {
		t.Fatalf("policy trousseau is not the least-privilege Transit policy for %s/%s: %v\n%s", transitMount, transitKey, err, policy)
	}
}

// TestPrivateFileIsReplacedWithMode0600: a root token written over an
// existing world-readable file ends up 0600, with the new content.
func TestPrivateFileIsReplacedWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault", "root-token")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writePrivateFile(path, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new\n" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %q (%v), mode %v; want \"new\\n\", 0600", path, b, err, fi.Mode().Perm())
	}
}
