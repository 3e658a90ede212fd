// Package runtime is the seam between what the appliance does (demo, rotate,
// audit, status, down, e2e) and where the stack runs (local processes or a
// kind cluster). Those operations are written once against Runtime; each
// runtime registers a constructor here, so this package imports neither.
package runtime

import (
	"context"
	"syscall"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
)

// Runtime runs etcd, kube-apiserver, a dev Vault and the trousseau plugin
// somewhere, and gives the operations above just enough control over them to
// prove encryption and inject the field-reported faults.
type Runtime interface {
	// Name is "local" or "kind".
	Name() string

	// Up brings the whole stack up, the apiserver writing Secrets per mode,
	// and returns when the apiserver is ready. It is idempotent: on a running
	// stack it only checks health, and it explains and repairs stale state.
	Up(ctx context.Context, mode controlplane.Mode) error
	// Down stops everything this runtime started and removes its runtime
	// state. It succeeds on a stack that is already gone or half-crashed.
	Down(ctx context.Context) error
	// Status describes what runs where.
	Status(ctx context.Context) (Status, error)

	// Kubeconfig is a kubeconfig file with cluster-admin rights.
	Kubeconfig() string
	// EtcdList returns the raw stored values under a key prefix, e.g.
	// "/registry/secrets/", exactly as etcd holds them.
	EtcdList(ctx context.Context, prefix string) ([]KV, error)

	// SetEncryptionMode rewrites the apiserver's EncryptionConfiguration.
	// The apiserver picks it up by itself (automatic reload).
	SetEncryptionMode(ctx context.Context, mode controlplane.Mode) error
	// StopAPIServer stops kube-apiserver and waits until it is gone.
	StopAPIServer(ctx context.Context) error
	// StartAPIServer starts kube-apiserver and returns once the process
	// runs, without waiting for readiness.
	StartAPIServer(ctx context.Context) error

	// SignalPlugin sends sig (SIGTERM or SIGKILL) to the plugin and waits
	// until it is gone. The socket file is left as the signal leaves it.
	SignalPlugin(ctx context.Context, sig syscall.Signal) error
	// StartPlugin starts the plugin and returns once the process runs.
	StartPlugin(ctx context.Context) error
	// PluginID identifies the running plugin process (a PID or a container
	// ID), so a test can tell that it never restarted.
	PluginID(ctx context.Context) (string, error)
	// PluginOps returns the base URL of the plugin's ops endpoint
	// (/readyz, /metrics).
	PluginOps() string
	// PluginStatus calls the plugin's KMS Status RPC on its socket.
	PluginStatus(ctx context.Context) (PluginStatus, error)

	// PauseVault makes Vault unreachable without losing its in-memory keys
	// (a dev Vault keeps them in memory, so stopping it would lose them).
	PauseVault(ctx context.Context) error
	// ResumeVault undoes PauseVault.
	ResumeVault(ctx context.Context) error
	// VaultRoot is a root client for the dev Vault: rotation and proofs.
	VaultRoot(ctx context.Context) (*vaultapi.Client, error)
	// Transit names the Transit mount and key the plugin uses.
	Transit() (mount, key string)
}

// KV is one etcd key and its raw value.
type KV struct {
	Key   string
	Value []byte
}

// PluginStatus is the plugin's answer to the KMS Status RPC.
type PluginStatus struct {
	Version string
	Healthz string
	KeyID   string
}

// Status is what runs where.
type Status struct {
	Runtime    string
	Components []Component
	// Kubeconfig is the path to use with kubectl.
	Kubeconfig string
	// Logs says where the components' logs are on this host, for a
	// person; empty when the runtime keeps none there.
	Logs string
}

// Component is one running part of the stack.
type Component struct {
	Name    string
	Running bool
	// ID is a PID or container ID.
	ID string
	// Address is where it listens.
	Address string
	// Unhealthy is set when the component runs but fails its health
	// check; Detail says why. A runtime that cannot tell leaves it false.
	Unhealthy bool
	// Detail is health or the reason it is not running.
	Detail string
}

// OK is true when the component runs and passes its health check: the only
// state status may mark as good.
func (c Component) OK() bool { return c.Running && !c.Unhealthy }

// LogQuoter is implemented by runtimes that keep their components' logs, so
// a failed e2e run can quote what each component said last.
type LogQuoter interface {
	QuoteLogs(lines int) string
}
