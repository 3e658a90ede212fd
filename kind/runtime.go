package kind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	kindlog "sigs.k8s.io/kind/pkg/log"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

func init() {
	runtime.Register("kind", func(o runtime.Options) (runtime.Runtime, error) { return New(o) })
	runtime.RegisterStateCheck("kind", hasState)
}

// hasState reports whether a kind stack of this instance, running or
// half-made, left its state: the EncryptionConfiguration is written before
// the cluster is created and the kubeconfig once it is, and Down removes
// both. It probes nothing, so status and down address the kind stack that
// exists rather than whatever a fresh Docker probe would pick.
func hasState(o runtime.Options) bool {
	opts, err := instanceConfig(o)
	if err != nil {
		return false
	}
	k := &Kind{opts: opts}
	for _, f := range []string{k.Kubeconfig(), k.encryptionFile()} {
		if _, err := os.Stat(f); err == nil {
			return true
		}
	}
	return false
}

// EnvNodeImage overrides the node image, e.g. to run CI on older
// Kubernetes minors.
const EnvNodeImage = "TROUSSEAU_KIND_NODE_IMAGE"

// EnvControlPlanes asks for an HA cluster, e.g. 3.
const EnvControlPlanes = "TROUSSEAU_KIND_CONTROL_PLANES"

// EnvVaultMode picks the dev Vault's mode: "dev" (default, in memory) or
// "persistent" (file storage on a PersistentVolume, unsealed by the
// appliance with material kept in the state directory).
const EnvVaultMode = "TROUSSEAU_KIND_VAULT_MODE"

const (
	vaultDev        = "dev"
	vaultPersistent = "persistent"
)

// stateSubdir is the kind runtime's state below the instance's state
// directory (runtime.Options.StateDir): .trousseau/kind for the default
// instance, .trousseau/instances/<instance>/kind for another. Neither holds
// the other, so deleting one instance's state never touches another's.
const stateSubdir = "kind"

// ClusterName is the default instance's kind cluster; another instance's
// is ClusterName-<instance>, so the e2e's Down never deletes the cluster
// someone is looking at.
const ClusterName = "trousseau"

// validInstance keeps an instance a DNS label: kind's cluster names allow
// less than a path does, and a separator or ".." would escape the state
// directory.
var validInstance = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// Names of what the appliance installs.
const (
	VaultNamespace  = "vault"
	VaultRelease    = "vault"
	PluginImage     = "trousseau.local/trousseau"
	PluginImageTag  = "kind-dev"
	transitMount    = "transit"
	transitKey      = "kubernetes"
	vaultK8sRole    = "trousseau"
	vaultK8sMount   = "kubernetes"
	vaultTokenKey   = "token"
	pluginContainer = "trousseau"
)

// Kind is the kind runtime. It implements runtime.Runtime.
type Kind struct {
	repo     string
	instance string
	opts     ConfigOptions
	p        *progress.Printer
	provider *cluster.Provider
	// vaultMode is vaultDev or vaultPersistent.
	vaultMode string

	opsOnce sync.Once
	opsURL  string
}

// New returns the kind runtime. It fails within a second when no Docker
// engine answers, saying so and pointing at the local runtime, because
// everything kind does needs the engine.
func New(o runtime.Options) (*Kind, error) {
	if o.RepoRoot == "" {
		return nil, errors.New("kind runtime: RepoRoot is empty")
	}
	opts, err := instanceConfig(o)
	if err != nil {
		return nil, err
	}
	if err := engineAnswers(); err != nil {
		// The local runtime cannot reach a kind stack, so with one on disk
		// the only fixes are Docker itself or forgetting the stack.
		if hasState(o) {
			return nil, fmt.Errorf("a kind stack's state is in %s, and the kind runtime needs a running Docker engine to reach it, "+
				"but none answered: %w.\nStart Docker (or point DOCKER_HOST at it); or, if that cluster is gone for good, "+
				"remove %s so the local runtime is picked", opts.StateDir, err, opts.StateDir)
		}
		return nil, fmt.Errorf("the kind runtime needs a running Docker engine, and none answered: %w.\n"+
			"Start Docker (or point DOCKER_HOST at it), or use the local runtime, which needs no Docker: "+
			"TROUSSEAU_RUNTIME=local go tool mage demo", err)
	}
	if o.Progress == nil {
		o.Progress = progress.Default()
	}
	opts.NodeImage = os.Getenv(EnvNodeImage)
	if n := os.Getenv(EnvControlPlanes); n != "" {
		if _, err := fmt.Sscan(n, &opts.ControlPlanes); err != nil || opts.ControlPlanes < 1 {
			return nil, fmt.Errorf("%s=%q: want a number of control-plane nodes such as 1 or 3", EnvControlPlanes, n)
		}
	}
	vaultMode := os.Getenv(EnvVaultMode)
	switch vaultMode {
	case "":
		vaultMode = vaultDev
	case vaultDev, vaultPersistent:
	default:
		return nil, fmt.Errorf("%s=%q: use %q or %q", EnvVaultMode, vaultMode, vaultDev, vaultPersistent)
	}
	return &Kind{
		repo:      o.RepoRoot,
		instance:  o.Instance,
		opts:      opts,
		p:         o.Progress,
		vaultMode: vaultMode,
		provider:  cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindlog.NoopLogger{})),
	}, nil
}

// instanceConfig keys the cluster name and the state directory on
// o.Instance: "" is the cluster people use (`mage demo`), any other
// instance gets its own cluster and directory.
func instanceConfig(o runtime.Options) (ConfigOptions, error) {
	opts := ConfigOptions{Name: ClusterName}
	if o.Instance != "" {
		if !validInstance.MatchString(o.Instance) {
			return opts, fmt.Errorf("kind runtime: instance %q must be 1 to 32 lowercase letters, digits or inner dashes "+
				"(it becomes part of the cluster name %s-<instance>): pick an instance such as \"e2e\"", o.Instance, ClusterName)
		}
		opts.Name = ClusterName + "-" + o.Instance
	}
	dir, err := filepath.Abs(filepath.Join(o.StateDir(), stateSubdir))
	if err != nil {
		return opts, fmt.Errorf("kind runtime: resolve the state directory under %s: %w", o.RepoRoot, err)
	}
	opts.StateDir = dir
	return opts, nil
}

// downHint is the command that deletes this instance's cluster and state,
// as Down does. Mage targets address only the default instance, so any
// other (the e2e's) is named by its cluster and directory.
func (k *Kind) downHint() string {
	if k.instance == "" {
		return "`go tool mage down`"
	}
	return fmt.Sprintf("`kind delete cluster --name %s && rm -rf %s` (mage targets address only the default instance, not %q)",
		k.opts.Name, k.opts.StateDir, k.instance)
}

// upHint is what creates this instance's stack.
func (k *Kind) upHint() string {
	if k.instance == "" {
		return "`go tool mage demo`"
	}
	return fmt.Sprintf("instance %q is created by the run that uses it (`go tool mage e2e` for \"e2e\")", k.instance)
}

// engineAnswers pings the Docker engine's API (a docker CLI on PATH proves
// nothing). A healthy engine answers in milliseconds; the budget keeps a
// missing or hung one under a second.
func engineAnswers() error {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	network, addr, ok := strings.Cut(host, "://")
	if !ok || (network != "unix" && network != "tcp") {
		return fmt.Errorf("DOCKER_HOST=%s is neither unix:// nor tcp://", host)
	}
	c := &http.Client{
		Timeout: 700 * time.Millisecond,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}},
	}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("%s: %w", host, op)
		}
		return fmt.Errorf("%s: %w", host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: /_ping answered %s", host, resp.Status)
	}
	return nil
}

// Name implements runtime.Runtime.
func (k *Kind) Name() string { return "kind" }

// Transit implements runtime.Runtime.
func (k *Kind) Transit() (string, string) { return transitMount, transitKey }

// Kubeconfig implements runtime.Runtime.
func (k *Kind) Kubeconfig() string { return filepath.Join(k.opts.StateDir, "kubeconfig") }

// StateDir is the instance's kind state directory (see stateSubdir).
func (k *Kind) StateDir() string { return k.opts.StateDir }

// restConfig is the client config of the admin kubeconfig Up wrote.
func (k *Kind) restConfig() (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w (is the stack up? `go tool mage status`)", k.Kubeconfig(), err)
	}
	return rc, nil
}

func (k *Kind) path(parts ...string) string {
	return filepath.Join(append([]string{k.opts.StateDir}, parts...)...)
}

func (k *Kind) rootTokenFile() string  { return k.path("vault", "root-token") }
func (k *Kind) credentialsDir() string { return k.path("vault", "credentials") }
func (k *Kind) imageArchive() string   { return k.path("image", "trousseau.tar") }
func (k *Kind) encryptionFile() string {
	return filepath.Join(k.opts.EncryptionConfigHostDir(), controlplane.EncryptionConfigFile)
}

// hostSocket is control-plane node i's plugin socket as seen from the host,
// through the node's extraMount.
func (k *Kind) hostSocket(i int) string {
	return filepath.Join(k.opts.SocketHostDir(i), controlplane.SocketFile)
}
