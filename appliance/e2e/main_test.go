//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/demo"
	"github.com/trousseau-io/trousseau/appliance/migrate"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/appliance/tools"

	// Both runtimes register themselves; runtime.Select picks one.
	_ "github.com/trousseau-io/trousseau/appliance/local"
	_ "github.com/trousseau-io/trousseau/kind"
)

// The stack is shared: starting it costs most of a minute, and the field
// cases are sequential anyway. It boots identity-only, as the kind flow
// does, so TestFieldCase15 can flip it; every other test first makes sure
// KMS writes (ensureKMS), so each also runs alone with -run.
var (
	rt   runtime.Runtime
	cs   *kubernetes.Clientset
	mode = controlplane.IdentityOnly
)

// keepOnFailureEnv keeps a failed stack running so its logs can be exported.
const keepOnFailureEnv = "TROUSSEAU_E2E_KEEP_ON_FAILURE"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	p := progress.New(os.Stdout, true)
	root, err := tools.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rt, err = runtime.Select(runtime.Options{RepoRoot: root, Progress: p, Instance: "e2e"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	// A stack left by an earlier, killed run would make every figure wrong.
	if err := rt.Down(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "clean up an earlier stack:", err)
		return 1
	}
	code := 1
	defer func() {
		// CI on Docker hosts sets this to export the kind cluster's logs
		// after a failure; it then deletes the cluster itself. Everywhere
		// else nothing is left running, pass or fail.
		if code != 0 && os.Getenv(keepOnFailureEnv) == "1" {
			fmt.Fprintf(os.Stderr, "e2e: %s=1: the failed stack is kept for inspection; stop it yourself\n", keepOnFailureEnv)
			return
		}
		if err := rt.Down(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop the stack:", err)
		}
	}()
	start := time.Now()
	if err := rt.Up(ctx, controlplane.IdentityOnly); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: bring the stack up:", err)
		return 1
	}
	fmt.Printf("FIGURE stack_up_seconds=%.1f\n", time.Since(start).Seconds())
	if cs, err = runtime.Clientset(rt); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code = m.Run()
	if q, ok := rt.(runtime.LogQuoter); ok && code != 0 {
		fmt.Println(q.QuoteLogs(15))
	}
	fmt.Printf("FIGURE e2e_total_seconds=%.1f\n", time.Since(start).Seconds())
	return code
}

// ensureKMS switches the stack to KMS-first if it is not yet, waits until
// a write lands under the plugin's key_id, and migrates.
func ensureKMS(t *testing.T) {
	t.Helper()
	if mode == controlplane.KMSFirst {
		return
	}
	ctx := context.Background()
	if err := rt.SetEncryptionMode(ctx, controlplane.KMSFirst); err != nil {
		t.Fatal(err)
	}
	st := pluginStatus(t)
	if err := demo.WaitForWriteKeyID(ctx, rt, cs, st.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Secrets(ctx, cs); err != nil {
		t.Fatal(err)
	}
	mode = controlplane.KMSFirst
}

func pluginStatus(t *testing.T) runtime.PluginStatus {
	t.Helper()
	st, err := rt.PluginStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthz != "ok" || st.KeyID == "" {
		t.Fatalf("plugin Status = %+v, want healthz ok and a key_id", st)
	}
	return st
}

// figure logs a measured number in a greppable form.
func figure(t *testing.T, name string, v any) {
	t.Helper()
	t.Logf("FIGURE %s=%v", name, v)
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func(context.Context) error) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		last = cond(ctx)
		cancel()
		if last == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, last)
	return 0
}

// apiserverHealth GETs an apiserver health endpoint (/readyz, /livez).
func apiserverHealth(path string) func(context.Context) error {
	return func(ctx context.Context) error {
		b, err := cs.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%s: %v %s", path, err, strings.TrimSpace(string(b)))
		}
		return nil
	}
}

// pluginReady GETs the plugin's /readyz.
func pluginReady(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rt.PluginOps()+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("plugin /readyz: %s", resp.Status)
	}
	return nil
}

// secretWorks writes and reads back one Secret through the apiserver.
func secretWorks(ctx context.Context) error {
	name := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	s := newSecret(probeNamespace(ctx), name, "probe")
	if _, err := cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := cs.CoreV1().Secrets(s.Namespace).Get(ctx, name, metav1.GetOptions{})
	return err
}
