//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/keyid"
	"github.com/trousseau-io/trousseau/plugin/kms"
	"github.com/trousseau-io/trousseau/plugin/transit"
	"github.com/trousseau-io/trousseau/plugin/vaultauth"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// TestKubernetesAuthWithRealAPIServerAndVault proves the plugin's
// "kubernetes" auth method with no stand-in: the local kube-apiserver
// issues the ServiceAccount tokens (TokenRequest) and reviews them
// (TokenReview, authorized by RBAC), the dev Vault runs its real Kubernetes
// auth method against that apiserver, and the plugin's own transit provider
// logs in from a token file. Tokens for another audience, another
// ServiceAccount or the same name in another namespace are refused, and the
// refusal reaches the plugin as PermissionDenied naming the method and
// Vault's reason.
func TestKubernetesAuthWithRealAPIServerAndVault(t *testing.T) {
	if rt.Name() != "local" {
		t.Skip("on kind the plugin DaemonSet itself logs in to Vault with Kubernetes auth (kind/plugin.go), " +
			"so every kind e2e already exercises it; this test covers the local runtime, where the plugin uses AppRole")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ns := namespace(t, "e2e-k8s-auth")
	otherNS := namespace(t, "e2e-k8s-auth-other")
	plugin := serviceAccount(t, ns, "trousseau")
	serviceAccount(t, ns, "intruder")
	serviceAccount(t, otherNS, "trousseau")

	// The reviewer token keeps the apiserver's default audience: with
	// audience "vault" the apiserver would not accept it as a bearer token.
	// The local apiserver authorizes with RBAC, so the TokenReview works only
	// because of this binding (the grant a Vault reviewer needs in a real
	// cluster too).
	reviewer := saToken(t, ns, "trousseau")
	bindAuthDelegator(t, ns, "trousseau")

	root, err := rt.VaultRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	transitMount, key := rt.Transit()
	mount := fmt.Sprintf("e2e-kubernetes-%d", time.Now().UnixNano())
	configureVaultKubernetesAuth(t, ctx, root, mount, transitMount, key, reviewer, ns)

	vaultCfg := func(tokenFile string) config.Vault {
		return config.Vault{Address: root.Address(), TransitMount: transitMount, KeyName: key,
			Auth: config.VaultAuth{Method: "kubernetes",
				Kubernetes: &config.KubernetesAuth{Mount: mount, Role: "trousseau", TokenFile: tokenFile}}}
	}
	method := "kubernetes role trousseau at auth/" + mount

	t.Run("the bound ServiceAccount logs in and encrypts", func(t *testing.T) {
		cfg := vaultCfg(writeToken(t, saToken(t, ns, "trousseau", "vault")))
		p, reg := newProvider(t, ctx, cfg)
		if n := logins(t, reg, "success"); n != 0 {
			t.Fatalf("%v successful logins before the first request, want 0: the provider must not log in when built", n)
		}
		id, err := p.CurrentKeyID(ctx)
		if err != nil {
			t.Fatalf("CurrentKeyID with Kubernetes auth: %v", err)
		}
		if want := keyid.FromTransit(root.Address(), "", transitMount, key, latestVersion(t, ctx, root, transitMount, key)); id != want {
			t.Fatalf("key_id = %q, want %q", id, want)
		}
		seed := make([]byte, 32)
		if _, err := rand.Read(seed); err != nil {
			t.Fatal(err)
		}
		ct, err := p.Encrypt(ctx, id, seed)
		if err != nil {
			t.Fatalf("Encrypt with Kubernetes auth: %v", err)
		}
		pt, err := p.Decrypt(ctx, id, ct)
		if err != nil {
			t.Fatalf("Decrypt with Kubernetes auth: %v", err)
		}
		if !bytes.Equal(pt, seed) {
			t.Fatal("Decrypt did not return the seed Encrypt wrapped")
		}
		// One login serves every request while the token lives.
		if s, f := logins(t, reg, "success"), logins(t, reg, "failure"); s != 1 || f != 0 {
			t.Fatalf("trousseau_vault_logins_total success=%v failure=%v, want 1 and 0", s, f)
		}
	})

	t.Run("Vault's token carries the identity the apiserver reviewed", func(t *testing.T) {
		// The UID is assigned by the apiserver and reaches Vault only
		// through TokenReview, so it shows that the real apiserver answered.
		meta := whoamiMeta(t, ctx, vaultCfg(writeToken(t, saToken(t, ns, "trousseau", "vault"))))
		want := map[string]any{"service_account_name": "trousseau", "service_account_namespace": ns,
			"service_account_uid": string(plugin.UID), "role": "trousseau"}
		for k, v := range want {
			if meta[k] != v {
				t.Errorf("token metadata %s = %v, want %v", k, meta[k], v)
			}
		}
	})

	for _, c := range []struct {
		name, ns, sa, audience string
		// reason is Vault's explanation. Vault checks these claims itself
		// before any TokenReview; a broken reviewer would be refused too,
		// but with a bare "permission denied", so the reason is asserted.
		reason string
	}{
		{"a token for another audience", ns, "trousseau", "another-service", "invalid audience"},
		{"another ServiceAccount", ns, "intruder", "vault", "service account name not authorized"},
		{"the same name in another namespace", otherNS, "trousseau", "vault", "namespace not authorized"},
	} {
		t.Run("refuses "+c.name, func(t *testing.T) {
			p, reg := newProvider(t, ctx, vaultCfg(writeToken(t, saToken(t, c.ns, c.sa, c.audience))))
			id, err := p.CurrentKeyID(ctx)
			if err == nil {
				t.Fatalf("CurrentKeyID succeeded (key_id %s) with %s", id, c.name)
			}
			if kms.KindOf(err) != kms.PermissionDenied || !strings.Contains(err.Error(), method) ||
				!strings.Contains(err.Error(), c.reason) {
				t.Fatalf("error = %v (kind %v), want PermissionDenied naming %q and Vault's reason %q", err, kms.KindOf(err), method, c.reason)
			}
			if s, f := logins(t, reg, "success"), logins(t, reg, "failure"); s != 0 || f != 1 {
				t.Fatalf("trousseau_vault_logins_total success=%v failure=%v, want 0 and 1", s, f)
			}
		})
	}
}

func serviceAccount(t *testing.T, ns, name string) *corev1.ServiceAccount {
	t.Helper()
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(context.Background(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ServiceAccount %s/%s: %v", ns, name, err)
	}
	return sa
}

// saToken asks the apiserver for a ServiceAccount token (TokenRequest API);
// no audiences means the apiserver's own.
func saToken(t *testing.T, ns, name string, audiences ...string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: new(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request a token for ServiceAccount %s/%s (audiences %v): %v", ns, name, audiences, err)
	}
	return tr.Status.Token
}

// writeToken stores a token the way the kubelet projects one: a file only
// the plugin's user reads.
func writeToken(t *testing.T, jwt string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bindAuthDelegator grants a ServiceAccount the right to create
// TokenReviews, as Vault's reviewer needs.
func bindAuthDelegator(t *testing.T, ns, name string) {
	t.Helper()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-vault-token-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(context.Background(), crb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("bind %s/%s to system:auth-delegator: %v", ns, name, err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
}

// configureVaultKubernetesAuth enables Kubernetes auth at mount, pointed at
// the runtime's apiserver, with a role "trousseau" bound to the
// ServiceAccount trousseau in ns, audience "vault" and the plugin's
// least-privilege policy. Everything is removed when the test ends: the dev
// Vault is shared by the other tests.
func configureVaultKubernetesAuth(t *testing.T, ctx context.Context, root *vaultapi.Client, mount, transitMount, key, reviewer, ns string) {
	t.Helper()
	api, err := clientcmd.BuildConfigFromFlags("", rt.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	ca := api.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(api.CAFile); err != nil {
			t.Fatalf("read the apiserver CA named by %s: %v", rt.Kubeconfig(), err)
		}
	}
	policy, err := vaultdev.Policy(transitMount, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicyWithContext(ctx, mount, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().DeletePolicy(mount) })
	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().DisableAuth(mount) })
	for _, w := range []struct {
		path string
		body map[string]any
	}{
		{"auth/" + mount + "/config", map[string]any{
			"kubernetes_host": api.Host, "kubernetes_ca_cert": string(ca),
			"token_reviewer_jwt": reviewer, "disable_local_ca_jwt": true,
		}},
		{"auth/" + mount + "/role/trousseau", map[string]any{
			"bound_service_account_names": []string{"trousseau"}, "bound_service_account_namespaces": []string{ns},
			"audience": "vault", "token_policies": []string{mount}, "token_ttl": "10m",
		}},
	} {
		if _, err := root.Logical().WriteWithContext(ctx, w.path, w.body); err != nil {
			t.Fatalf("write %s: %v", w.path, err)
		}
	}
}

// newProvider builds the plugin's transit provider on its own registry, so
// its login counter starts at zero.
func newProvider(t *testing.T, ctx context.Context, cfg config.Vault) (*transit.Provider, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := transit.New(ctx, cfg, transit.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, reg
}

// logins reads trousseau_vault_logins_total{result} from reg.
func logins(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "trousseau_vault_logins_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// whoamiMeta logs in with the plugin's authenticator and returns the
// token's metadata as Vault recorded it.
func whoamiMeta(t *testing.T, ctx context.Context, cfg config.Vault) map[string]any {
	t.Helper()
	vc := vaultapi.DefaultConfig()
	vc.Address = cfg.Address
	c, err := vaultapi.NewClient(vc)
	if err != nil {
		t.Fatal(err)
	}
	a, err := vaultauth.New(c, cfg.Auth, cfg.TLS, vaultauth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	var meta map[string]any
	err = a.Do(ctx, func(ctx context.Context, c *vaultapi.Client) error {
		s, err := c.Auth().Token().LookupSelfWithContext(ctx)
		if err == nil {
			meta, _ = s.Data["meta"].(map[string]any)
		}
		return err
	})
	if err != nil {
		t.Fatalf("log in with the plugin's authenticator and look the token up: %v", err)
	}
	return meta
}

// latestVersion is the Transit key's latest version as Vault holds it.
func latestVersion(t *testing.T, ctx context.Context, root *vaultapi.Client, mount, key string) int {
	t.Helper()
	s, err := root.Logical().ReadWithContext(ctx, mount+"/keys/"+key)
	if err != nil || s == nil {
		t.Fatalf("read transit key %s/%s: %v", mount, key, err)
	}
	n, err := s.Data["latest_version"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}
