package kind

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

func kindFor(t *testing.T, root, instance string) *Kind {
	t.Helper()
	opts, err := instanceConfig(runtime.Options{RepoRoot: root, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return &Kind{opts: opts, instance: instance}
}

// TestStateCheckFindsOnlyThisInstancesKindStack: the state check sees a
// kind stack from the moment Up writes its first file (the
// EncryptionConfiguration, before the cluster exists, so a failed create
// counts) and through its kubeconfig, per instance, until Down removes the
// state directory.
func TestStateCheckFindsOnlyThisInstancesKindStack(t *testing.T) {
	root := t.TempDir()
	def := runtime.Options{RepoRoot: root}
	e2e := runtime.Options{RepoRoot: root, Instance: "e2e"}
	if hasState(def) || hasState(e2e) {
		t.Fatal("state found in an empty repository")
	}
	// A local stack's state (the parent directory) is not kind's.
	if err := os.WriteFile(filepath.Join(mkdir(t, def.StateDir()), "state.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if hasState(def) {
		t.Error("the local runtime's state file reads as a kind stack")
	}

	// Up's first write, through the writer Up uses.
	k := kindFor(t, root, "e2e")
	if _, err := k.writeEncryptionConfig(controlplane.IdentityOnly); err != nil {
		t.Fatal(err)
	}
	if !hasState(e2e) || hasState(def) {
		t.Errorf("after the e2e instance's first write: e2e=%v default=%v, want true false", hasState(e2e), hasState(def))
	}

	// A created cluster: its kubeconfig alone is enough.
	d := kindFor(t, root, "")
	if err := os.WriteFile(filepath.Join(mkdir(t, d.StateDir()), "kubeconfig"), []byte("apiVersion: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !hasState(def) {
		t.Error("the default instance's kubeconfig is not found")
	}

	// Down removes the state directory; an invalid instance never matches.
	if err := os.RemoveAll(k.StateDir()); err != nil {
		t.Fatal(err)
	}
	if hasState(e2e) {
		t.Error("state found after Down removed it")
	}
	if hasState(runtime.Options{RepoRoot: root, Instance: "../.."}) {
		t.Error("an invalid instance matched a state directory")
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSelectFollowsAnExistingKindStackUnlessTheRuntimeIsForced: with the
// kind stack's state on disk, status and down pick kind without probing
// Docker, and without an engine they say to start Docker or remove that
// state, not to switch to local (which cannot reach the stack);
// TROUSSEAU_RUNTIME still wins over the state.
func TestSelectFollowsAnExistingKindStackUnlessTheRuntimeIsForced(t *testing.T) {
	root := t.TempDir()
	k := kindFor(t, root, "")
	if _, err := k.writeEncryptionConfig(controlplane.IdentityOnly); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	t.Setenv(runtime.EnvRuntime, "")
	var out bytes.Buffer
	_, err := runtime.Select(runtime.Options{RepoRoot: root, Progress: progress.New(&out, false)})
	if !strings.HasPrefix(out.String(), "runtime: kind (its stack's state is in ") {
		t.Errorf("selection line %q, want kind for its existing stack", out.String())
	}
	if err == nil {
		t.Fatal("the kind runtime started without a Docker engine")
	}
	for _, want := range []string{"kind stack's state is in " + k.StateDir(), "Start Docker", "remove " + k.StateDir()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error should say %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "TROUSSEAU_RUNTIME=local go tool mage") {
		t.Errorf("error points at the local runtime, which cannot reach the kind stack:\n%v", err)
	}

	runtime.Register("local", func(runtime.Options) (runtime.Runtime, error) { return nil, nil })
	t.Setenv(runtime.EnvRuntime, "local")
	out.Reset()
	if _, err := runtime.Select(runtime.Options{RepoRoot: root, Progress: progress.New(&out, false)}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "runtime: local ("+runtime.EnvRuntime+"=local)\n" {
		t.Errorf("with %s=local and a kind stack on disk: %q, want local by the variable", runtime.EnvRuntime, got)
	}
}

// TestStartOverHintsNameTheInstanceThatFailed: `go tool mage down` only
// reaches the default instance, so the e2e instance's unrecoverable states
// name the commands that delete its own cluster and state.
func TestStartOverHintsNameTheInstanceThatFailed(t *testing.T) {
	// A Vault that says it is initialised and sealed, whose unseal material is gone.
	vault := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sys/seal-status" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"initialized":true,"sealed":true,"t":1,"n":1,"progress":0}`))
	}))
	defer vault.Close()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = vault.URL
	vc, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		instance string
		want     []string
		notWant  string
	}{
		{"", []string{"`go tool mage down`"}, "kind delete cluster"},
		{"e2e", []string{"`kind delete cluster --name trousseau-e2e && rm -rf ", "instances/e2e/kind`"}, "mage down"},
	} {
		k := kindFor(t, t.TempDir(), tc.instance)
		// The dev Vault's token Secret exists, the host's copy is gone.
		cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: vaultRootTokenSecret, Namespace: VaultNamespace}})
		tokenErr := k.ensureRootToken(ctx, cs)
		_, unsealErr := k.initAndUnseal(ctx, vc)
		if tokenErr == nil || unsealErr == nil {
			t.Fatalf("instance %q: lost root token: %v; lost unseal material: %v; want both to fail", tc.instance, tokenErr, unsealErr)
		}
		// A failed create (which needs Docker) appends downHint as its fix.
		for what, msg := range map[string]string{"lost root token": tokenErr.Error(), "lost unseal material": unsealErr.Error(), "create fix": k.downHint()} {
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("instance %q, %s: %q does not say %q", tc.instance, what, msg, w)
				}
			}
			if strings.Contains(msg, tc.notWant) {
				t.Errorf("instance %q, %s: %q says %q, which addresses another instance", tc.instance, what, msg, tc.notWant)
			}
		}
	}
}
