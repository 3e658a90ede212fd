package local

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/pki"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/appliance/tools"
	"github.com/trousseau-io/trousseau/charts"
)

// Component names: pid files, log files and status rows use them.
const (
	etcdName      = "etcd"
	vaultName     = "vault"
	pluginName    = "trousseau"
	apiserverName = "kube-apiserver"
)

// startupTimeout bounds each component's wait for health. The apiserver on
// a loaded 2-core machine is the slowest.
var startupTimeout = map[string]time.Duration{
	etcdName: 30 * time.Second, pluginName: 30 * time.Second, apiserverName: 90 * time.Second,
}

// waitHealthy polls check until it succeeds, the process dies or the
// timeout passes. On failure the message quotes the component's last log
// lines and names a port clash when the log shows one.
func (l *Local) waitHealthy(parent context.Context, name, bin string, check func(context.Context) error) error {
	started := time.Now()
	ctx, cancel := context.WithTimeout(parent, startupTimeout[name])
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		if running(l.pidFile(name), bin) == 0 {
			return l.startFailure(name, "exited during startup", last)
		}
		select {
		case <-ctx.Done():
			return runtime.WaitEnded(parent, "waiting for "+name+" to become healthy", started, func(waited time.Duration) error {
				return l.startFailure(name, fmt.Sprintf("not healthy within %s", waited), last)
			})
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (l *Local) startFailure(name, what string, last error) error {
	log := tail(l.logFile(name), 12)
	// Never advise `mage down` here: it would discard the dev Vault and with
	// it every Secret, while a re-run restarts only what is missing.
	fix := "fix what the log above names, then run `go tool mage demo` again: it restarts only what is missing (add -v for details)"
	if strings.Contains(log, "address already in use") {
		fix = "another process took the port between our probe and the bind (a port clash): run `go tool mage demo` again; " +
			"nothing here uses fixed ports, so a retry picks a new free one"
	}
	return fmt.Errorf("%s %s (last check: %v).\nLast lines of %s:\n%s\nFix: %s", name, what, last, l.logFile(name), log, fix)
}

func (l *Local) startEtcd(ctx context.Context, s state) error {
	bin, err := tools.Etcd.Path()
	if err != nil {
		return err
	}
	peer := "http://127.0.0.1:" + strconv.Itoa(s.EtcdPeerPort)
	_, err = start(proc{
		name: etcdName, bin: bin, pidFile: l.pidFile(etcdName), logFile: l.logFile(etcdName), env: os.Environ(),
		args: []string{
			"--name=trousseau", "--data-dir=" + l.path("etcd"),
			"--listen-client-urls=" + s.etcdEndpoint(), "--advertise-client-urls=" + s.etcdEndpoint(),
			"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=trousseau=" + peer,
			// Small quota and fast compaction: this is a development store.
			"--quota-backend-bytes=2147483648", "--auto-compaction-retention=1h",
		},
	})
	if err != nil {
		return err
	}
	return l.waitHealthy(ctx, etcdName, bin, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, s.etcdEndpoint()+"/health")
	})
}

// buildPlugin compiles the plugin from this checkout, so the stack always
// runs the code under test.
func (l *Local) buildPlugin(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", l.pluginBin(), "./plugin/cmd/trousseau")
	cmd.Dir = l.repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("build the trousseau plugin (go build ./plugin/cmd/trousseau): %w\n%s\nFix: make the plugin compile, then retry", err, out)
	}
	return nil
}

// writePluginConfig renders the plugin configuration from the Helm chart,
// so the local stack runs exactly the configuration the chart ships.
func (l *Local) writePluginConfig(s state) error {
	creds := l.vaultDir()
	values := map[string]any{
		"socket": map[string]any{"path": l.socketPath()},
		"ops":    map[string]any{"address": s.opsAddr()},
		"log":    map[string]any{"format": "json", "level": "info"},
		// A short refresh so a rotation reaches the apiserver within seconds.
		"status": map[string]any{"refreshInterval": "5s"},
		"vault": map[string]any{
			"address": s.VaultAddr, "transitMount": transitMount, "keyName": transitKey,
		},
		"auth": map[string]any{
			"method": "approle",
			"approle": map[string]any{
				"mount":        "approle",
				"roleIDFile":   filepath.Join(creds, "role-id"),
				"secretIDFile": filepath.Join(creds, "secret-id"),
			},
		},
	}
	cfg, err := charts.PluginConfig(values)
	if err != nil {
		return fmt.Errorf("render the plugin config from the chart: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(l.pluginConfig()), 0o700); err != nil {
		return err
	}
	return os.WriteFile(l.pluginConfig(), cfg, 0o600)
}

// launchPlugin starts the plugin process without waiting for readiness.
func (l *Local) launchPlugin() error {
	if err := os.MkdirAll(filepath.Dir(l.socketPath()), 0o700); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	_, err := start(proc{
		name: pluginName, bin: l.pluginBin(), pidFile: l.pidFile(pluginName), logFile: l.logFile(pluginName),
		args: []string{"serve", "--config", l.pluginConfig()}, env: pluginEnv(),
	})
	return err
}

// pluginEnv keeps the caller's TROUSSEAU_* and VAULT_* settings away from
// the plugin: the rendered config file is the whole configuration.
func pluginEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TROUSSEAU_") && !strings.HasPrefix(kv, "VAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

func (l *Local) waitPluginReady(ctx context.Context, s state) error {
	return l.waitHealthy(ctx, pluginName, l.binOf(pluginName), func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, "http://"+s.opsAddr()+"/readyz")
	})
}

// writeEncryptionConfig writes controlplane.EncryptionConfig atomically
// (write then rename), so the apiserver's reload never reads half a file.
func (l *Local) writeEncryptionConfig(mode controlplane.Mode) error {
	cfg, err := controlplane.EncryptionConfig(mode, l.socketPath())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(l.encryptionDir(), 0o700); err != nil {
		return err
	}
	target := filepath.Join(l.encryptionDir(), controlplane.EncryptionConfigFile)
	tmp := target + ".tmp"
	if err := os.WriteFile(tmp, cfg, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, target)
}

// apiserverArgs are the kube-apiserver flags: loopback serving with the
// local PKI, plus exactly controlplane.APIServerFlags for encryption.
func (l *Local) apiserverArgs(s state, f pki.Files) []string {
	flags := map[string]string{
		"etcd-servers":                     s.etcdEndpoint(),
		"bind-address":                     "127.0.0.1",
		"advertise-address":                "127.0.0.1",
		"secure-port":                      strconv.Itoa(s.APIServerPort),
		"tls-cert-file":                    f.ServingCert,
		"tls-private-key-file":             f.ServingKey,
		"client-ca-file":                   f.CACert,
		"service-account-issuer":           "https://kubernetes.default.svc.cluster.local",
		"service-account-key-file":         f.SAPub,
		"service-account-signing-key-file": f.SAKey,
		"api-audiences":                    "https://kubernetes.default.svc.cluster.local",
		"service-cluster-ip-range":         "10.96.0.0/16",
		"authorization-mode":               "RBAC",
		// The ServiceAccount admission plugin waits for default
		// ServiceAccounts that only kube-controller-manager creates, and
		// none runs here; Secrets do not need it.
		"disable-admission-plugins": "ServiceAccount",
		// Endpoints for a loopback address are invalid and no Service
		// routes to this apiserver anyway.
		"endpoint-reconciler-type": "none",
		"cert-dir":                 l.path("apiserver"),
		"profiling":                "false",
	}
	maps.Copy(flags, controlplane.APIServerFlags(l.encryptionDir()))
	return controlplane.Args(flags)
}

func (l *Local) launchAPIServer(s state) error {
	bin, err := tools.KubeAPIServer.Path()
	if err != nil {
		return err
	}
	f, err := pki.Ensure(l.pkiDir())
	if err != nil {
		return err
	}
	_, err = start(proc{
		name: apiserverName, bin: bin, pidFile: l.pidFile(apiserverName), logFile: l.logFile(apiserverName),
		args: l.apiserverArgs(s, f), env: os.Environ(),
	})
	return err
}

// waitAPIServerReady waits for /readyz, which includes the kms-providers
// check: ready means Secrets can be read and written through the plugin.
func (l *Local) waitAPIServerReady(ctx context.Context, s state) error {
	bin, err := tools.KubeAPIServer.Path()
	if err != nil {
		return err
	}
	c, err := l.adminHTTP()
	if err != nil {
		return err
	}
	return l.waitHealthy(ctx, apiserverName, bin, func(ctx context.Context) error {
		return httpOK(ctx, c, s.apiserverURL()+"/readyz")
	})
}

// apiserverReady checks /readyz once.
func (l *Local) apiserverReady(ctx context.Context, s state) error {
	c, err := l.adminHTTP()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return httpOK(ctx, c, s.apiserverURL()+"/readyz")
}

// adminHTTP is an HTTPS client with the admin certificate.
func (l *Local) adminHTTP() (*http.Client, error) {
	f := pki.FilesIn(l.pkiDir())
	pair, err := tls.LoadX509KeyPair(f.AdminCert, f.AdminKey)
	if err != nil {
		return nil, fmt.Errorf("load admin certificate: %w (run `go tool mage down` to regenerate the local PKI)", err)
	}
	pool, err := caPool(f.CACert)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12,
	}}}, nil
}

func caPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read local CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate: run `go tool mage down` and delete it to regenerate", file)
	}
	return pool, nil
}

// httpOK GETs url and wants 200; the error carries the body, which for
// /readyz names the failing check.
func httpOK(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, failingChecks(string(body)))
	}
	return nil
}

// failingChecks keeps the "[-]… failed" lines of a verbose health answer.
func failingChecks(body string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "[-]") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	if len(out) == 0 {
		return strings.TrimSpace(body)
	}
	return strings.Join(out, "; ")
}
