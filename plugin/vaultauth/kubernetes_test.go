package vaultauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/trousseau-io/trousseau/plugin/config"
)

// TestKubernetesLoginAgainstRealVault runs Vault's real kubernetes auth
// method. Vault asks a kube-apiserver to review the ServiceAccount token;
// here a stand-in answers only that TokenReview, which is the one call
// Vault makes. Vault parses the JWT claims itself (no signature check
// without pem_keys), so the token carries real ServiceAccount claims.
func TestKubernetesLoginAgainstRealVault(t *testing.T) {
	srv := devVault(t)
	root := srv.RootClient()
	jwt := serviceAccountJWT(t, "kube-system", "trousseau")

	var reviews atomic.Int32
	apiserver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			Spec struct{ Token string } `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&review)
		if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || review.Spec.Token != jwt {
			http.Error(w, "unexpected review", http.StatusBadRequest)
			return
		}
		reviews.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
			"status": map[string]any{"authenticated": true, "user": map[string]any{
				"username": "system:serviceaccount:kube-system:trousseau", "uid": "6f1f5c3e-0000-4000-8000-000000000001",
			}},
		})
	}))
	t.Cleanup(apiserver.Close)

	if err := root.Sys().EnableAuthWithOptionsWithContext(ctx(t), "kubernetes", &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string]map[string]any{
		"auth/kubernetes/config": {"kubernetes_host": apiserver.URL, "disable_local_ca_jwt": true},
		"auth/kubernetes/role/trousseau": {"bound_service_account_names": "trousseau",
			"bound_service_account_namespaces": "kube-system", "token_policies": "default", "token_ttl": "1h"},
	} {
		if _, err := root.Logical().WriteWithContext(ctx(t), path, body); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	tokenFile := writeFile(t, t.TempDir(), "token", jwt+"\n")
	auth := newAuth(t, pluginClient(t, srv, "", ""), config.VaultAuth{Method: "kubernetes",
		Kubernetes: &config.KubernetesAuth{Role: "trousseau", TokenFile: tokenFile}}, config.VaultTLS{})
	meta, _ := whoami(t, auth)["meta"].(map[string]any)
	if meta["service_account_name"] != "trousseau" || meta["service_account_namespace"] != "kube-system" {
		t.Fatalf("token metadata %v does not show the ServiceAccount login", meta)
	}
	if n := reviews.Load(); n != 1 {
		t.Fatalf("%d TokenReviews, want 1", n)
	}
}

// serviceAccountJWT builds a token with the claims a projected
// ServiceAccount token carries. Its signature is random: Vault checks it
// only when configured with pem_keys, and otherwise trusts the TokenReview.
func serviceAccountJWT(t *testing.T, namespace, name string) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	sig := make([]byte, 256)
	if _, err := rand.Read(sig); err != nil {
		t.Fatal(err)
	}
	return enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]string{
		"iss":                                    "kubernetes/serviceaccount",
		"sub":                                    "system:serviceaccount:" + namespace + ":" + name,
		"kubernetes.io/serviceaccount/namespace": namespace,
		"kubernetes.io/serviceaccount/service-account.name": name,
		"kubernetes.io/serviceaccount/service-account.uid":  "6f1f5c3e-0000-4000-8000-000000000001",
	}) + "." + base64.RawURLEncoding.EncodeToString(sig)
}
