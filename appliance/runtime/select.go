package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/trousseau-io/trousseau/appliance/progress"
)

// EnvRuntime selects the runtime explicitly: "kind" or "local".
const EnvRuntime = "TROUSSEAU_RUNTIME"

// StateDirName is where the runtimes keep their state, under the
// repository root (git-ignored).
const StateDirName = ".trousseau"

// Options is what every runtime constructor gets.
type Options struct {
	// RepoRoot is the repository checkout; runtimes keep their state in
	// StateDir below it.
	RepoRoot string
	// Progress receives people-facing step lines.
	Progress *progress.Printer
	// Instance separates stacks that may run side by side: empty for the
	// one people use (`mage demo`), "e2e" for the tests, so a test run
	// never tears down a stack someone is looking at.
	Instance string
}

// StateDir is the instance's state directory: RepoRoot/.trousseau for the
// default instance, RepoRoot/.trousseau/instances/<Instance> otherwise.
// Every runtime keys its state on it, so two instances never share files.
func (o Options) StateDir() string {
	dir := filepath.Join(o.RepoRoot, StateDirName)
	if o.Instance != "" {
		dir = filepath.Join(dir, "instances", o.Instance)
	}
	return dir
}

// Factory builds a runtime.
type Factory func(Options) (Runtime, error)

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
)

// Register makes a runtime selectable by name. Runtimes call it from init,
// and the binary that selects (mage, the e2e test) imports them.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	factories[name] = f
}

func registered() []string {
	mu.Lock()
	defer mu.Unlock()
	var names []string
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Select picks the runtime: TROUSSEAU_RUNTIME if set, else kind when a
// Docker engine answers and local otherwise. It prints the choice and why,
// because the two runtimes behave differently enough that a person should
// never have to guess.
func Select(opts Options) (Runtime, error) {
	name, why := choose(os.Getenv(EnvRuntime), dockerPing)
	if name == "kind" && os.Getenv(EnvRuntime) == "kind" {
		if err := dockerPing(); err != nil {
			return nil, fmt.Errorf("%s=kind, but no Docker engine answered (%v). kind runs the cluster in Docker containers, "+
				"so it needs a running engine: start Docker (or fix DOCKER_HOST), or unset %s to use the local runtime, "+
				"which runs the same components as processes", EnvRuntime, err, EnvRuntime)
		}
	}
	mu.Lock()
	f := factories[name]
	mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("runtime %q (%s) is not available in this build; available: %s. "+
			"Set %s to one of those", name, why, strings.Join(registered(), ", "), EnvRuntime)
	}
	if opts.Progress == nil {
		opts.Progress = progress.Default()
	}
	opts.Progress.Say("runtime: %s (%s)", name, why)
	return f(opts)
}

// choose is the selection rule, separated from the environment for tests.
func choose(env string, ping func() error) (name, why string) {
	switch env {
	case "kind", "local":
		return env, EnvRuntime + "=" + env
	case "":
	default:
		return env, EnvRuntime + "=" + env + " is not kind or local"
	}
	if err := ping(); err != nil {
		return "local", "no Docker engine answered (" + err.Error() + "); set " + EnvRuntime + "=kind to force kind"
	}
	return "kind", "a Docker engine answered on " + dockerSocket() + "; set " + EnvRuntime + "=local to run processes instead"
}

// dockerSocket is the engine's unix socket from DOCKER_HOST, or the default.
func dockerSocket() string {
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		return strings.TrimPrefix(h, "unix://")
	}
	return "/var/run/docker.sock"
}

// dockerPing asks the engine itself: a docker CLI on PATH proves nothing.
func dockerPing() error {
	if h := os.Getenv("DOCKER_HOST"); h != "" && !strings.HasPrefix(h, "unix://") {
		return fmt.Errorf("DOCKER_HOST=%s is not a unix socket, which this check supports", h)
	}
	sock := dockerSocket()
	c := &http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return op
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: /_ping answered %s", sock, resp.Status)
	}
	return nil
}
