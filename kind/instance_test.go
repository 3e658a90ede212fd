package kind

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// TestInstanceKeysClusterNameAndStateDir: the default instance keeps the
// names people know, another instance gets its own cluster and a state
// directory below the instance's directory, the one the local runtime
// uses for the same instance.
func TestInstanceKeysClusterNameAndStateDir(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		instance, name, dir string
	}{
		{"", "trousseau", ".trousseau/kind"},
		{"e2e", "trousseau-e2e", ".trousseau/instances/e2e/kind"},
	} {
		o := runtime.Options{RepoRoot: root, Instance: tc.instance}
		got, err := instanceConfig(o)
		if err != nil {
			t.Fatalf("instance %q: %v", tc.instance, err)
		}
		if got.Name != tc.name {
			t.Errorf("instance %q: cluster %q, want %q", tc.instance, got.Name, tc.name)
		}
		if want := filepath.Join(root, filepath.FromSlash(tc.dir)); got.StateDir != want {
			t.Errorf("instance %q: state dir %s, want %s", tc.instance, got.StateDir, want)
		}
		if filepath.Dir(got.StateDir) != o.StateDir() {
			t.Errorf("instance %q: state dir %s is not below the instance's directory %s", tc.instance, got.StateDir, o.StateDir())
		}
	}
}

// TestInstancesNeverShareAClusterOrStateDir: no two instances get the same
// cluster, and neither's state directory holds the other's, so Down of one
// (kind delete cluster, then remove its state directory) leaves the other
// running with its kubeconfig, root token and socket mounts.
func TestInstancesNeverShareAClusterOrStateDir(t *testing.T) {
	root := t.TempDir()
	instances := []string{"", "e2e", "kind", "instances", "control-plane", "e2e-2"}
	for i, a := range instances {
		ca, err := instanceConfig(runtime.Options{RepoRoot: root, Instance: a})
		if err != nil {
			t.Fatalf("instance %q: %v", a, err)
		}
		for _, b := range instances[i+1:] {
			cb, err := instanceConfig(runtime.Options{RepoRoot: root, Instance: b})
			if err != nil {
				t.Fatalf("instance %q: %v", b, err)
			}
			if ca.Name == cb.Name {
				t.Errorf("instances %q and %q share cluster %q", a, b, ca.Name)
			}
			if within(ca.StateDir, cb.StateDir) || within(cb.StateDir, ca.StateDir) {
				t.Errorf("instances %q and %q share state: %s and %s", a, b, ca.StateDir, cb.StateDir)
			}
		}
	}
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// TestInstanceMustBeAClusterNameAndStayInTheStateDir: an instance that kind
// would refuse as part of a cluster name, or that would lead out of the
// state directory, is refused up front with the rule and an example.
func TestInstanceMustBeAClusterNameAndStayInTheStateDir(t *testing.T) {
	for _, bad := range []string{"../demo", "a/b", "E2E", "-e2e", "e2e-", "e2e.1", strings.Repeat("x", 33)} {
		_, err := instanceConfig(runtime.Options{RepoRoot: t.TempDir(), Instance: bad})
		if err == nil {
			t.Errorf("instance %q was accepted", bad)
			continue
		}
		for _, want := range []string{"lowercase letters, digits", `"e2e"`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("instance %q: error should say %q:\n%v", bad, want, err)
			}
		}
	}
}

// TestCIExportsTheE2EClusterLogs: CI runs the e2e, whose instance is "e2e",
// so its failure step must export that instance's cluster.
func TestCIExportsTheE2EClusterLogs(t *testing.T) {
	wf, err := os.ReadFile(filepath.Join("..", ".github", "workflows", "ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := instanceConfig(runtime.Options{RepoRoot: t.TempDir(), Instance: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(wf), "export logs --name "+c.Name+" ") {
		t.Errorf("ci.yml does not export the logs of kind cluster %s, the one the e2e runs on", c.Name)
	}
}
