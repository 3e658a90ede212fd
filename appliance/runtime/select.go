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

// StateCheck reports whether a runtime finds a stack of its own (running or
// crashed) in the instance's state directory, without starting or probing
// anything.
type StateCheck func(Options) bool

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
	checks    = map[string]StateCheck{}
)

// Register makes a runtime selectable by name. Runtimes call it from init,
// and the binary that selects (mage, the e2e test) imports them.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	factories[name] = f
}

// RegisterStateCheck lets Select find the runtime whose stack already
// exists, so status, down, audit and rotate address that stack rather than
// whatever a fresh Docker probe would pick.
func RegisterStateCheck(name string, c StateCheck) {
	mu.Lock()
	defer mu.Unlock()
	checks[name] = c
}

// withState names the runtimes that find a stack of theirs in opts' state
// directory.
func withState(opts Options) []string {
	mu.Lock()
	defer mu.Unlock()
	var names []string
	for n, c := range checks {
		if c(opts) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
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

// Select picks the runtime: TROUSSEAU_RUNTIME if set; else the runtime
// whose stack already exists in the state directory; else kind when a
// Docker engine answers and local otherwise. It prints the choice in one
// short line (the full reason with mage -v), because the two runtimes
// behave differently enough that a person should never have to guess.
func Select(opts Options) (Runtime, error) {
	if opts.Progress == nil {
		opts.Progress = progress.Default()
	}
	c, err := choose(os.Getenv(EnvRuntime), withState(opts), opts.StateDir(), dockerPing)
	if err != nil {
		return nil, err
	}
	if c.name == "kind" && c.forced {
		if err := dockerPing(); err != nil {
			return nil, fmt.Errorf("%s, but no Docker engine answered (%v). kind runs the cluster in Docker containers, "+
				"so it needs a running engine: start Docker (or fix DOCKER_HOST), or unset %s to use the local runtime, "+
				"which runs the same components as processes", c.why, err, EnvRuntime)
		}
	}
	mu.Lock()
	f := factories[c.name]
	mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("the %s runtime is not compiled into this binary (available: %s): "+
			"import its package, or set %s to one of those", c.name, strings.Join(registered(), ", "), EnvRuntime)
	}
	opts.Progress.Say("runtime: %s (%s)", c.name, c.why)
	if c.detail != "" {
		opts.Progress.Detail("%s", c.detail)
	}
	return f(opts)
}

// choice is a selected runtime: why in a few words for everyone, detail
// (the probe's own error, how to override) for mage -v.
type choice struct {
	name, why, detail string
	forced            bool
}

// choose is the selection rule, separated from the environment for tests.
// existing names the runtimes that found a stack of theirs in stateDir.
func choose(env string, existing []string, stateDir string, ping func() error) (choice, error) {
	if env != "" {
		name := strings.ToLower(strings.TrimSpace(env))
		if name != "kind" && name != "local" {
			return choice{}, fmt.Errorf("%s=%s: unknown runtime; use kind or local", EnvRuntime, env)
		}
		return choice{name: name, why: EnvRuntime + "=" + env, forced: true}, nil
	}
	if len(existing) == 1 {
		return choice{name: existing[0], why: "its stack's state is in " + stateDir,
			detail: "set " + EnvRuntime + " to address another runtime's stack"}, nil
	}
	if err := ping(); err != nil {
		return choice{name: "local", why: "no Docker engine",
			detail: "no Docker engine answered (" + err.Error() + "); set " + EnvRuntime + "=kind to force kind"}, nil
	}
	return choice{name: "kind", why: "a Docker engine answered",
		detail: "the engine answered on " + dockerSocket() + "; set " + EnvRuntime + "=local to run processes instead"}, nil
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
