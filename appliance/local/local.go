// Package local runs the appliance as processes on this machine: etcd,
// kube-apiserver, a dev Vault and the trousseau plugin, all on loopback
// ports, with their state in .trousseau/ at the repository root. It is the
// runtime for hosts without a Docker engine and implements runtime.Runtime.
package local

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

func init() {
	runtime.Register("local", func(o runtime.Options) (runtime.Runtime, error) { return New(o) })
	runtime.RegisterStateCheck("local", hasState)
}

// hasState reports whether a local stack, running or crashed, left its
// state in the instance's directory: the state file or a pid file.
func hasState(o runtime.Options) bool {
	l, err := New(o)
	if err != nil {
		return false
	}
	if _, err := os.Stat(l.stateFile()); err == nil {
		return true
	}
	pids, _ := filepath.Glob(l.pidFile("*"))
	return len(pids) > 0
}

// Transit mount and key the local stack uses; the chart's defaults.
const (
	transitMount = "transit"
	transitKey   = "kubernetes"
)

// Local is the process runtime.
type Local struct {
	repo string
	dir  string
	p    *progress.Printer
}

// New returns the local runtime rooted at opts.RepoRoot. It starts nothing.
func New(opts runtime.Options) (*Local, error) {
	if opts.RepoRoot == "" {
		return nil, errors.New("local runtime: RepoRoot is empty")
	}
	if opts.Progress == nil {
		opts.Progress = progress.Default()
	}
	return &Local{repo: opts.RepoRoot, dir: opts.StateDir(), p: opts.Progress}, nil
}

// Name implements runtime.Runtime.
func (l *Local) Name() string { return "local" }

// Transit implements runtime.Runtime.
func (l *Local) Transit() (string, string) { return transitMount, transitKey }

// Kubeconfig implements runtime.Runtime.
func (l *Local) Kubeconfig() string { return filepath.Join(l.dir, "kubeconfig") }

func (l *Local) path(parts ...string) string {
	return filepath.Join(append([]string{l.dir}, parts...)...)
}

func (l *Local) pidFile(name string) string { return l.path("pids", name+".pid") }
func (l *Local) logFile(name string) string {
	if name == vaultName {
		return l.vaultLog()
	}
	return l.path("logs", name+".log")
}

// logsWhere tells a person where the logs are: vaultdev keeps Vault's next
// to its credentials, the others share one directory.
func (l *Local) logsWhere() string {
	return l.path("logs") + "/ (etcd, trousseau, kube-apiserver) and " + l.vaultLog()
}

func (l *Local) pkiDir() string        { return l.path("pki") }
func (l *Local) encryptionDir() string { return l.path("encryption") }
func (l *Local) vaultDir() string      { return l.path("vault") }
func (l *Local) rootTokenFile() string { return l.path("vault", "root-token") }
func (l *Local) pluginBin() string     { return l.path("bin", "trousseau") }
func (l *Local) pluginConfig() string  { return l.path("plugin", "trousseau.yaml") }

// socketPath is the plugin socket. A unix socket path is limited to 107
// bytes, so a deep checkout falls back to a short per-checkout directory in
// the temp dir.
func (l *Local) socketPath() string {
	p := l.path("run", controlplane.SocketFile)
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(l.dir))
	return filepath.Join(os.TempDir(), "trousseau-"+hex.EncodeToString(sum[:4]), controlplane.SocketFile)
}

// state is what a later command (status, down, rotate) needs to find the
// running stack. It lives in .trousseau/state.json.
type state struct {
	EtcdClientPort int    `json:"etcdClientPort"`
	EtcdPeerPort   int    `json:"etcdPeerPort"`
	APIServerPort  int    `json:"apiserverPort"`
	PluginOpsPort  int    `json:"pluginOpsPort"`
	VaultAddr      string `json:"vaultAddr"`
}

func (l *Local) stateFile() string { return l.path("state.json") }

func (l *Local) loadState() (state, error) {
	var s state
	b, err := os.ReadFile(l.stateFile())
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read %s: %w", l.stateFile(), err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s is corrupt (%v): run `go tool mage down` to reset the local stack", l.stateFile(), err)
	}
	return s, nil
}

func (l *Local) saveState(s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(l.stateFile(), b, 0o600)
}

func (s state) etcdEndpoint() string { return "http://127.0.0.1:" + strconv.Itoa(s.EtcdClientPort) }
func (s state) apiserverURL() string { return "https://127.0.0.1:" + strconv.Itoa(s.APIServerPort) }
func (s state) opsAddr() string      { return "127.0.0.1:" + strconv.Itoa(s.PluginOpsPort) }

// freePort asks the kernel for a free loopback port. Another process could
// take it before ours binds; startup then fails with a port-clash message.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// portFree reports whether a loopback port can be bound right now.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
