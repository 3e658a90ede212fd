package kind

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindexec "sigs.k8s.io/kind/pkg/exec"

	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// controlPlanes returns the control-plane nodes in config order: kind names
// them <cluster>-control-plane, <cluster>-control-plane2, …, so node i is
// the one that mounts SocketHostDir(i).
func (k *Kind) controlPlanes() ([]nodes.Node, error) {
	all, err := k.provider.ListNodes(k.opts.Name)
	if err != nil {
		return nil, fmt.Errorf("list nodes of kind cluster %s: %w", k.opts.Name, err)
	}
	cps, err := nodeutils.ControlPlaneNodes(all)
	if err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("kind cluster %s has no control-plane node: is it up? (`go tool mage status`)", k.opts.Name)
	}
	sort.Slice(cps, func(i, j int) bool {
		a, b := cps[i].String(), cps[j].String()
		return len(a) < len(b) || (len(a) == len(b) && a < b)
	})
	return cps, nil
}

func (k *Kind) firstControlPlane() (nodes.Node, error) {
	cps, err := k.controlPlanes()
	if err != nil {
		return nil, err
	}
	return cps[0], nil
}

// run runs a command in a node and returns its stdout; the error quotes stderr.
func run(n nodes.Node, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := n.Command(name, args...).SetStdout(&stdout).SetStderr(&stderr).Run()
	if err != nil {
		return "", fmt.Errorf("%s on node %s: %w: %s", kindexec.PrettyCommand(name, args...), n, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// containerID is the running container of that name in the node, "" if none.
func containerID(n nodes.Node, name string) (string, error) {
	out, err := run(n, "crictl", "ps", "--state", "running", "--name", "^"+name+"$", "-q")
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return "", nil
	}
	return ids[0], nil
}

// EtcdList implements runtime.Runtime: etcdctl inside the etcd container of
// the first control-plane node (crictl exec), with kubeadm's etcd client
// certificates, so the values are exactly what etcd stores.
func (k *Kind) EtcdList(ctx context.Context, prefix string) ([]runtime.KV, error) {
	n, err := k.firstControlPlane()
	if err != nil {
		return nil, err
	}
	id, err := containerID(n, "etcd")
	if err != nil || id == "" {
		return nil, fmt.Errorf("find the etcd container on %s: %v (is the cluster up?)", n, err)
	}
	const pki = "/etc/kubernetes/pki/etcd/"
	out, err := run(n, "crictl", "exec", id, "etcdctl",
		"--endpoints=https://127.0.0.1:2379", "--cacert="+pki+"ca.crt", "--cert="+pki+"server.crt", "--key="+pki+"server.key",
		"get", "--prefix", prefix, "-w", "json")
	if err != nil {
		return nil, fmt.Errorf("list etcd keys under %s: %w", prefix, err)
	}
	return decodeEtcdctlJSON([]byte(out))
}

// decodeEtcdctlJSON reads `etcdctl get -w json`, whose keys and values are
// base64.
func decodeEtcdctlJSON(out []byte) ([]runtime.KV, error) {
	var resp struct {
		KVs []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("decode etcdctl output: %w", err)
	}
	kvs := make([]runtime.KV, 0, len(resp.KVs))
	for _, kv := range resp.KVs {
		key, err := base64.StdEncoding.DecodeString(kv.Key)
		if err != nil {
			return nil, fmt.Errorf("decode etcd key: %w", err)
		}
		val, err := base64.StdEncoding.DecodeString(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("decode etcd value of %s: %w", key, err)
		}
		kvs = append(kvs, runtime.KV{Key: string(key), Value: val})
	}
	return kvs, nil
}

// proveEncrypted fails unless every Secret in etcd carries the KMS prefix.
// A cluster whose kubeadm patch was skipped would pass every other check.
func (k *Kind) proveEncrypted(ctx context.Context) error {
	kvs, err := k.EtcdList(ctx, "/registry/secrets/")
	if err != nil {
		return err
	}
	var plain []string
	for _, kv := range kvs {
		if !bytes.HasPrefix(kv.Value, []byte(etcdproof.Prefix)) {
			plain = append(plain, kv.Key)
		}
	}
	if len(kvs) == 0 {
		return fmt.Errorf("etcd holds no Secrets under /registry/secrets/: nothing proves encryption")
	}
	if len(plain) > 0 {
		return fmt.Errorf("%d of %d Secrets in etcd are not KMS-encrypted (first: %s). If none is, the kubeadm patch did not reach "+
			"kube-apiserver: check its --encryption-provider-config flag in /etc/kubernetes/manifests/kube-apiserver.yaml on the node",
			len(plain), len(kvs), plain[0])
	}
	return nil
}

// reloadMetric counts the apiserver's successful EncryptionConfiguration reloads.
const reloadMetric = "apiserver_encryption_config_controller_automatic_reloads_total"

// lastConfigMetric carries, as its hash label, "sha256:<hex>" of the
// EncryptionConfiguration file the apiserver runs (k8s.io/apiserver
// encryptionconfig/metrics; set at boot and on every successful reload).
const lastConfigMetric = "apiserver_encryption_config_controller_last_config_info"

// lastConfigHash finds lastConfigMetric's hash label. Its other label,
// apiserver_id_hash, also ends in hash=, hence the separator.
var lastConfigHash = regexp.MustCompile(`^` + lastConfigMetric + `\{(?:.*,)?hash="([^"]*)"`)

// apiserverConfig is what one apiserver reports about its encryption config.
type apiserverConfig struct {
	// Reloads is reloadMetric{status="success"}.
	Reloads float64
	// Hash is the running file's hash, "" when the apiserver does not
	// export lastConfigMetric.
	Hash string
}

func (c apiserverConfig) String() string {
	if c.Hash == "" {
		return fmt.Sprintf("%g reloads", c.Reloads)
	}
	return fmt.Sprintf("%g reloads, runs %s", c.Reloads, c.Hash)
}

func parseAPIServerConfig(metrics string) apiserverConfig {
	c := apiserverConfig{Reloads: runtime.SumMetric(metrics, reloadMetric, `status="success"`)}
	for _, line := range strings.Split(metrics, "\n") {
		if m := lastConfigHash.FindStringSubmatch(line); m != nil {
			c.Hash = m[1]
		}
	}
	return c
}

// runs reports whether an apiserver that reported before and reports now
// runs the file whose hash is want. Where the apiserver names the hash of
// the file it runs, that is the answer. Otherwise only a new successful
// reload after a change tells; an unchanged file is taken as applied.
func (now apiserverConfig) runs(before apiserverConfig, want string, changed bool) bool {
	if now.Hash != "" {
		return now.Hash == want
	}
	return !changed || now.Reloads > before.Reloads
}

// encryptionConfigHash is how the apiserver names a config file's content.
func encryptionConfigHash(content []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(content))
}

// apiserverConfigs reads every apiserver's metrics through its own node
// (kubectl on the node against 127.0.0.1), because in HA the load balancer
// would pick one at random.
func (k *Kind) apiserverConfigs(ctx context.Context) (map[string]apiserverConfig, error) {
	cps, err := k.controlPlanes()
	if err != nil {
		return nil, err
	}
	out := map[string]apiserverConfig{}
	for _, n := range cps {
		text, err := run(n, "kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "--server=https://127.0.0.1:6443", "get", "--raw", "/metrics")
		if err != nil {
			return nil, fmt.Errorf("read kube-apiserver metrics: %w", err)
		}
		out[n.String()] = parseAPIServerConfig(text)
	}
	return out, nil
}

// waitReload waits until every apiserver runs the config file whose hash is
// want (read is normally apiserverConfigs; before is its answer from before
// the file was written, changed whether the write changed it). Waiting on
// the file's hash rather than only on one more reload also covers an Up
// re-run after a reload that had not happened yet: the file is then
// unchanged, but an apiserver may still run the old one. The apiserver polls
// the file once a minute and health-checks the new providers before it
// swaps.
func waitReload(parent context.Context, before map[string]apiserverConfig, want string, changed bool,
	read func(context.Context) (map[string]apiserverConfig, error)) error {
	started := time.Now()
	ctx, cancel := context.WithTimeout(parent, 3*time.Minute)
	defer cancel()
	for {
		now, err := read(ctx)
		done := err == nil
		for node, b := range before {
			if !now[node].runs(b, want, changed) {
				done = false
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return runtime.WaitEnded(parent, "waiting for every kube-apiserver to reload the EncryptionConfiguration", started, func(waited time.Duration) error {
				return fmt.Errorf("kube-apiserver did not run the new EncryptionConfiguration (%s) within %s (before %v, now %v, last error %v). "+
					"A failed reload keeps the old config: check `kubectl -n kube-system logs` of kube-apiserver for \"encryption config\"",
					want, waited, before, now, err)
			})
		case <-time.After(5 * time.Second):
		}
	}
}

const apiserverManifest = "/etc/kubernetes/manifests/kube-apiserver.yaml"

// apiserverParked is where StopAPIServer moves the static-pod manifest: the
// kubelet stops a static pod whose manifest leaves its directory.
const apiserverParked = "/etc/kubernetes/kube-apiserver.yaml.stopped"

// StopAPIServer implements runtime.Runtime on every control-plane node.
func (k *Kind) StopAPIServer(ctx context.Context) error {
	return k.moveAPIServerManifest(ctx, apiserverManifest, apiserverParked, false)
}

// StartAPIServer implements runtime.Runtime: the manifest goes back and the
// kubelet starts the pod; readiness is the caller's to wait for.
func (k *Kind) StartAPIServer(ctx context.Context) error {
	return k.moveAPIServerManifest(ctx, apiserverParked, apiserverManifest, true)
}

// moveAPIServerManifest moves the static-pod manifest from → to on every
// control-plane node and waits until the kubelet runs (or no longer runs)
// a kube-apiserver container on each.
func (k *Kind) moveAPIServerManifest(ctx context.Context, from, to string, running bool) error {
	verb, state := "stop", "stop"
	if running {
		verb, state = "start", "run"
	}
	cps, err := k.controlPlanes()
	if err != nil {
		return err
	}
	for _, n := range cps {
		if _, err := run(n, "mv", from, to); err != nil {
			return fmt.Errorf("%s kube-apiserver: %w", verb, err)
		}
	}
	return waitFor(ctx, 2*time.Minute, "kube-apiserver containers to "+state, func() (bool, error) {
		for _, n := range cps {
			id, err := containerID(n, "kube-apiserver")
			if err != nil || (id != "") != running {
				return false, err
			}
		}
		return true, nil
	})
}

// containerPID is the host-namespace PID of the running container of that
// name in the node, with the container's ID.
func containerPID(n nodes.Node, name string) (id, pid string, err error) {
	id, err = containerID(n, name)
	if err != nil {
		return "", "", err
	}
	if id == "" {
		return "", "", fmt.Errorf("no running %s container on %s: is the stack up? (`go tool mage status`)", name, n)
	}
	out, err := run(n, "crictl", "inspect", "--output", "go-template", "--template", "{{.info.pid}}", id)
	if err != nil {
		return "", "", err
	}
	return id, strings.TrimSpace(out), nil
}

// SignalPlugin implements runtime.Runtime. The distroless image has no
// kill, so the signal is sent from the node to the container's PID, and
// the wait ends when that container no longer runs. The kubelet then
// restarts it, as it would after a crash.
func (k *Kind) SignalPlugin(ctx context.Context, sig syscall.Signal) error {
	n, err := k.firstControlPlane()
	if err != nil {
		return err
	}
	id, pid, err := containerPID(n, pluginContainer)
	if err != nil {
		return err
	}
	if err := killIn(n, strings.TrimPrefix(sigName(sig), "SIG"), pid); err != nil {
		return fmt.Errorf("signal the plugin: %w", err)
	}
	return waitFor(ctx, time.Minute, "the plugin container to exit", func() (bool, error) {
		out, err := run(n, "crictl", "inspect", "--output", "go-template", "--template", "{{.status.state}}", id)
		if err != nil { // the kubelet already removed the exited container
			return true, nil
		}
		return strings.TrimSpace(out) != "CONTAINER_RUNNING", nil
	})
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return fmt.Sprintf("%d", int(sig))
}

// StartPlugin implements runtime.Runtime. The kubelet restarts the
// DaemonSet's container by itself; this waits for a running one.
func (k *Kind) StartPlugin(ctx context.Context) error {
	n, err := k.firstControlPlane()
	if err != nil {
		return err
	}
	return waitFor(ctx, 2*time.Minute, "the kubelet to restart the plugin container", func() (bool, error) {
		id, err := containerID(n, pluginContainer)
		return err == nil && id != "", nil
	})
}

// PluginID implements runtime.Runtime: the running container's ID.
func (k *Kind) PluginID(context.Context) (string, error) {
	n, err := k.firstControlPlane()
	if err != nil {
		return "", err
	}
	id, err := containerID(n, pluginContainer)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", fmt.Errorf("the plugin is not running on %s", n)
	}
	return id, nil
}

// PluginStatus implements runtime.Runtime through the first node's socket
// mount on the host (a Linux Docker engine shares bind-mounted sockets).
func (k *Kind) PluginStatus(ctx context.Context) (runtime.PluginStatus, error) {
	sock, cleanup, err := dialablePath(k.hostSocket(0))
	if err != nil {
		return runtime.PluginStatus{}, err
	}
	defer cleanup()
	return runtime.PluginStatusAt(ctx, sock)
}

// maxUnixPath is the longest socket path connect(2) takes on Linux:
// sun_path is 108 bytes including the terminating NUL.
const maxUnixPath = 107

// dialablePath returns a path to sock that connect(2) accepts. The host
// path of a node's socket lies under the repository's state directory
// (.trousseau/instances/e2e/kind/nodes/control-plane-0/socket/kms.sock), so
// a checkout a few directories deep exceeds sun_path and every dial fails
// with "invalid argument". connect follows symlinks, so a longer path is
// reached through a symlink in a fresh temporary directory.
func dialablePath(sock string) (string, func(), error) {
	if len(sock) <= maxUnixPath {
		return sock, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "trousseau-sock-")
	if err != nil {
		return "", nil, fmt.Errorf("the plugin socket path %s is longer than a unix socket path may be (%d bytes), and a short link to it failed: %w", sock, maxUnixPath, err)
	}
	link := filepath.Join(dir, filepath.Base(sock))
	if err := os.Symlink(sock, link); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("link %s to the plugin socket %s: %w", link, sock, err)
	}
	return link, func() { os.RemoveAll(dir) }, nil
}

// waitFor polls cond every second until it holds or the timeout passes. A
// cancelled parent reads as an interruption, and a timeout names how long
// it really waited (a parent deadline may end it before timeout).
func waitFor(parent context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	started := time.Now()
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return runtime.WaitEnded(parent, "waiting for "+what, started, func(waited time.Duration) error {
				return fmt.Errorf("timed out after %s waiting for %s (last error: %v)", waited, what, last)
			})
		case <-time.After(time.Second):
		}
	}
}

// killIn signals a host PID from inside the node with the shell's kill
// builtin, which every node image has.
func killIn(n nodes.Node, sig, pid string) error {
	if _, err := strconv.Atoi(pid); err != nil {
		return fmt.Errorf("container PID %q on %s is not a number", pid, n)
	}
	_, err := run(n, "sh", "-c", "kill -s "+sig+" "+pid)
	return err
}
