package kind

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerfileCopiesEveryPackageThePluginImports: the image build (which
// cannot run here) would fail if the Dockerfile or .dockerignore left out a
// package the plugin binary imports. go list is the source of truth.
func TestDockerfileCopiesEveryPackageThePluginImports(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./plugin/cmd/trousseau")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/trousseau-io/trousseau/"
	copied, allowed := dockerfileSources(t, root)
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		dir := strings.TrimPrefix(pkg, module) + "/"
		if !hasPrefixIn(dir, copied) {
			t.Errorf("Dockerfile does not COPY %s (imported by the plugin)", dir)
		}
		if !hasPrefixIn(dir, allowed) {
			t.Errorf(".dockerignore excludes %s (imported by the plugin)", dir)
		}
	}
}

func dockerfileSources(t *testing.T, root string) (copied, allowed []string) {
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(df), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "COPY" && !strings.HasPrefix(f[1], "--from") {
			copied = append(copied, f[1:len(f)-1]...)
		}
	}
	di, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(di), "\n") {
		if strings.HasPrefix(l, "!") {
			allowed = append(allowed, strings.TrimPrefix(l, "!"))
		}
	}
	return copied, allowed
}

func hasPrefixIn(dir string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(dir, p) {
			return true
		}
	}
	return false
}
