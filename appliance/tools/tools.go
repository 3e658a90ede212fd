// Package tools builds and locates the real components the appliance and the
// tests run: kube-apiserver, etcd and Vault. Each is built from its pinned Go
// module (scripts/tools/*) once per version into a cache outside the
// repository, so a second run is instant and no binary is ever committed.
package tools

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Tool is one cached binary.
type Tool struct {
	// Name is the binary name.
	Name string
	// Version is the pinned version; it keys the cache directory.
	Version string
	// Module is the helper module directory under scripts/tools.
	Module string
	// Package is the main package to build.
	Package string
	// LDFlags stamp versions where the binary reports them.
	LDFlags string
	// Env is extra build environment.
	Env []string
	// EnvOverride names the variable that points at an existing binary.
	EnvOverride string
}

// The pinned tools. Versions must match scripts/tools/*/go.mod.
var (
	KubeAPIServer = Tool{
		Name: "kube-apiserver", Version: "v1.37.2", Module: "kube",
		Package: "k8s.io/kubernetes/cmd/kube-apiserver",
		LDFlags: "-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2" +
			" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" +
			" -X k8s.io/component-base/version.gitTreeState=clean",
		EnvOverride: "TROUSSEAU_KUBE_APISERVER_BIN",
	}
	Etcd = Tool{
		Name: "etcd", Version: "v3.7.0", Module: "kube",
		Package: "go.etcd.io/etcd/server/v3", LDFlags: "-s -w",
		EnvOverride: "TROUSSEAU_ETCD_BIN",
	}
	// Vault is BUSL-licensed: built for local development and tests, never shipped.
	// -mod=mod because Vault's test-only imports make `go mod tidy` fail.
	Vault = Tool{
		Name: "vault", Version: "v1.21.0", Module: "vault",
		Package: "github.com/hashicorp/vault", LDFlags: "-s -w",
		Env:         []string{"GOFLAGS=-mod=mod"},
		EnvOverride: "TROUSSEAU_VAULT_BIN",
	}
	// All lists every tool in build order (fastest first).
	All = []Tool{Etcd, KubeAPIServer, Vault}
)

// CacheDir is where built tools live: $TROUSSEAU_TOOLS_DIR, or
// $XDG_CACHE_HOME/trousseau/tools, or ~/.cache/trousseau/tools.
func CacheDir() (string, error) {
	if d := os.Getenv("TROUSSEAU_TOOLS_DIR"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for built tools (set TROUSSEAU_TOOLS_DIR): %w", err)
	}
	return filepath.Join(base, "trousseau", "tools"), nil
}

// CachedPath is where the tool's binary lives once built.
func (t Tool) CachedPath() (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, t.Name+"-"+t.Version, t.Name), nil
}

// Path returns the binary to run: the override from the environment if set,
// else the cached build. It fails with the fix if neither exists.
func (t Tool) Path() (string, error) {
	if p := os.Getenv(t.EnvOverride); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (unset it to use the cached build)", t.EnvOverride, p, err)
		}
		return p, nil
	}
	p, err := t.CachedPath()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s %s is not built yet at %s: run `go tool mage tools` (or set %s to an existing binary)",
			t.Name, t.Version, p, t.EnvOverride)
	}
	return p, nil
}

// Built reports whether Path would succeed.
func (t Tool) Built() bool {
	_, err := t.Path()
	return err == nil
}

// Build compiles the tool into the cache. repoRoot is the repository root
// (it holds scripts/tools); log receives the go command's output. The binary
// is written to a temporary name and renamed, so an interrupted build never
// leaves a half-written tool behind.
func (t Tool) Build(repoRoot string, log io.Writer) error {
	out, err := t.CachedPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create tool cache: %w", err)
	}
	tmp := out + ".partial"
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", t.LDFlags, "-o", tmp, t.Package)
	cmd.Dir = filepath.Join(repoRoot, "scripts", "tools", t.Module)
	cmd.Env = append(os.Environ(), t.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		_ = os.Remove(tmp)
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("build %s %s failed (go build in %s exited %d): see the output above; "+
				"a network error means the Go module proxy was unreachable, retry `go tool mage tools`",
				t.Name, t.Version, cmd.Dir, exit.ExitCode())
		}
		return fmt.Errorf("build %s %s: %w", t.Name, t.Version, err)
	}
	return os.Rename(tmp, out)
}

// RepoRoot walks up from the working directory to the directory holding
// go.mod of this module, so targets and tests find scripts/tools wherever they run.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/trousseau-io/trousseau\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the trousseau repository: run from its checkout")
		}
		dir = parent
	}
}
