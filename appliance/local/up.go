package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/pki"
	"github.com/trousseau-io/trousseau/appliance/tools"
)

// components in start order. Vault and the plugin start before the
// apiserver, so the apiserver's first Status already succeeds (plan B).
var components = []string{etcdName, vaultName, pluginName, apiserverName}

// binOf is the program name a component's pid must run: a pid file is
// only trusted when the process behind it is that program.
// The name alone is used when the tool cannot be located (e.g. its cache
// was cleared), so a down still finds what an earlier up started.
func (l *Local) binOf(name string) string {
	tool := map[string]tools.Tool{etcdName: tools.Etcd, apiserverName: tools.KubeAPIServer, vaultName: tools.Vault}
	if t, ok := tool[name]; ok {
		if p, err := t.Path(); err == nil {
			return p
		}
	}
	if name == pluginName {
		return "trousseau"
	}
	return name
}

// live maps each running component to its pid.
func (l *Local) live() map[string]int {
	m := map[string]int{}
	for _, c := range components {
		if pid := l.pidOf(c); pid != 0 {
			m[c] = pid
		}
	}
	return m
}

// Up implements runtime.Runtime.
func (l *Local) Up(ctx context.Context, mode controlplane.Mode) error {
	if err := preflight(); err != nil {
		return err
	}
	live := l.live()
	if len(live) == len(components) {
		s, err := l.loadState()
		if err != nil {
			return err
		}
		if err := l.apiserverReady(ctx, s); err == nil {
			l.p.Say("▸ the local stack is already running (kube-apiserver pid %d): reusing it", live[apiserverName])
			return l.SetEncryptionMode(ctx, mode)
		}
	}
	s, live, err := l.prepare(ctx, live)
	if err != nil {
		return err
	}
	if _, err := pki.Ensure(l.pkiDir()); err != nil {
		return err
	}
	if err := l.writeKubeconfig(s); err != nil {
		return err
	}
	if live[etcdName] == 0 {
		if err := l.p.Step(fmt.Sprintf("start etcd on %s", s.etcdEndpoint()), func() error { return l.startEtcd(ctx, s) }); err != nil {
			return err
		}
	}
	if live[vaultName] == 0 {
		err := l.p.Step("start the dev Vault and bootstrap Transit + AppRole", func() error {
			addr, err := l.startVault(ctx)
			if err != nil {
				return err
			}
			s.VaultAddr = addr
			return l.saveState(s)
		})
		if err != nil {
			return err
		}
		l.p.Say("  ! dev-mode Vault keeps its keys in memory: if it stops, the Secrets it encrypted are unreadable (`mage down` discards them)")
	}
	if live[pluginName] == 0 {
		if err := l.p.Step("build the trousseau plugin", func() error { return l.buildPlugin(ctx) }); err != nil {
			return err
		}
		err := l.p.Step(fmt.Sprintf("start the plugin (socket %s, ops %s)", l.socketPath(), s.opsAddr()), func() error {
			if err := l.writePluginConfig(s); err != nil {
				return err
			}
			if err := l.launchPlugin(); err != nil {
				return err
			}
			return l.waitPluginReady(ctx, s)
		})
		if err != nil {
			return err
		}
	}
	if err := l.writeEncryptionConfig(mode); err != nil {
		return err
	}
	if live[apiserverName] == 0 {
		err := l.p.Step(fmt.Sprintf("start kube-apiserver on %s (Secrets: %s)", s.apiserverURL(), mode), func() error {
			if err := l.launchAPIServer(s); err != nil {
				return err
			}
			return l.waitAPIServerReady(ctx, s)
		})
		if err != nil {
			return err
		}
		return nil
	}
	return l.p.Step("wait for kube-apiserver /readyz", func() error { return l.waitAPIServerReady(ctx, s) })
}

// prepare decides what to keep from an earlier run and allocates ports for
// what must start. A dead Vault means the Secrets in etcd were encrypted
// under keys that no longer exist, so everything but the PKI is discarded,
// and the person is told why.
func (l *Local) prepare(ctx context.Context, live map[string]int) (state, map[string]int, error) {
	s, err := l.loadState()
	if err != nil {
		return s, live, err
	}
	if live[vaultName] != 0 && s.VaultAddr == "" {
		// Vault started but the run died before recording its address:
		// nothing can reach it, so it counts as gone.
		live = map[string]int{etcdName: live[etcdName], pluginName: live[pluginName], apiserverName: live[apiserverName]}
	}
	if live[vaultName] == 0 {
		if leftovers := l.leftovers(); leftovers != "" {
			secrets := -1
			if live[etcdName] != 0 {
				if kvs, err := l.EtcdList(ctx, "/registry/secrets/"); err == nil {
					secrets = len(kvs)
				}
			}
			l.p.Say("%s", discardNotice(leftovers, l.path("etcd"), secrets))
			if err := l.Down(ctx); err != nil {
				return s, live, err
			}
			live = map[string]int{}
		}
		s = state{}
	} else if len(live) < len(components) {
		var missing []string
		for _, c := range components {
			if live[c] == 0 {
				missing = append(missing, c)
			}
		}
		l.p.Say("%s", restartNotice(missing))
	}
	ports := []struct {
		port      *int
		component string
	}{
		{&s.EtcdClientPort, etcdName}, {&s.EtcdPeerPort, etcdName},
		{&s.PluginOpsPort, pluginName}, {&s.APIServerPort, apiserverName},
	}
	for _, p := range ports {
		if live[p.component] != 0 && *p.port != 0 {
			continue
		}
		if *p.port != 0 && portFree(*p.port) {
			continue
		}
		if *p.port, err = freePort(); err != nil {
			return s, live, err
		}
	}
	for _, d := range []string{l.dir, l.path("pids"), l.path("logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return s, live, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return s, live, l.saveState(s)
}

// discardNotice is the loud announcement that a re-run throws away the
// Secrets of a crashed stack. It does not ask (CI runs this unattended), so
// it must be impossible to miss and say why nothing else is possible and
// how to avoid it. secrets < 0 means they could not be counted.
func discardNotice(leftovers, etcdDir string, secrets int) string {
	what := "every Secret in the old etcd (not counted: etcd is not running)"
	if secrets >= 0 {
		what = fmt.Sprintf("%d Secrets in the old etcd", secrets)
	}
	bar := strings.Repeat("!", 100)
	return strings.Join([]string{
		bar,
		"!! DISCARDING " + what + " (" + etcdDir + ").",
		"!! Why: the dev Vault of the earlier run is gone, and a dev Vault keeps its Transit key only in memory:",
		"!!      the key that encrypted those Secrets died with it, so they can never be decrypted again.",
		"!! Found: " + leftovers + ".",
		"!! Kept: the local CA and the logs. Starting a fresh stack.",
		"!! To keep Secrets across Vault restarts, use a persistent Vault: the kind runtime with",
		"!!      TROUSSEAU_KIND_VAULT_MODE=persistent, or in a cluster the chart values vault.address and auth.*.",
		bar,
	}, "\n")
}

// restartNotice says what a re-run restarts, by name, when the dev Vault
// (and so every key) survived.
func restartNotice(missing []string) string {
	names := strings.Join(missing, ", ")
	if n := len(missing); n > 1 {
		names = strings.Join(missing[:n-1], ", ") + " and " + missing[n-1]
	}
	return "▸ restarting only " + names + " (stopped); the dev Vault still runs, so its keys and your Secrets are intact"
}

// leftovers describes what an earlier run left behind, or "" for nothing.
func (l *Local) leftovers() string {
	var parts []string
	for _, c := range components {
		if pid := l.pidOf(c); pid != 0 {
			parts = append(parts, fmt.Sprintf("%s still running as pid %d", c, pid))
		} else if pid := readPID(l.pidFile(c)); pid != 0 {
			parts = append(parts, fmt.Sprintf("%s pid %d is gone", c, pid))
		}
	}
	if _, err := os.Stat(l.path("etcd")); err == nil {
		parts = append(parts, "etcd data in "+l.path("etcd"))
	}
	return strings.Join(parts, ", ")
}

// preflight names missing tools before anything starts.
func preflight() error {
	var missing []string
	for _, t := range []tools.Tool{tools.Etcd, tools.KubeAPIServer, tools.Vault} {
		if !t.Built() {
			missing = append(missing, t.Name+" "+t.Version)
		}
	}
	if len(missing) > 0 {
		return errors.New("the local runtime needs " + strings.Join(missing, ", ") + ", which are not built yet. " +
			"Fix: run `go tool mage tools` (it builds them from their pinned Go modules into ~/.cache/trousseau/tools, " +
			"once per version), or point TROUSSEAU_ETCD_BIN, TROUSSEAU_KUBE_APISERVER_BIN and TROUSSEAU_VAULT_BIN at existing binaries")
	}
	return nil
}

// writeKubeconfig writes an admin kubeconfig with absolute paths, usable by
// plain kubectl.
func (l *Local) writeKubeconfig(s state) error {
	f := pki.FilesIn(l.pkiDir())
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["trousseau-local"] = &clientcmdapi.Cluster{Server: s.apiserverURL(), CertificateAuthority: f.CACert}
	cfg.AuthInfos["trousseau-admin"] = &clientcmdapi.AuthInfo{ClientCertificate: f.AdminCert, ClientKey: f.AdminKey}
	cfg.Contexts["trousseau-local"] = &clientcmdapi.Context{Cluster: "trousseau-local", AuthInfo: "trousseau-admin", Namespace: "default"}
	cfg.CurrentContext = "trousseau-local"
	return clientcmd.WriteToFile(*cfg, l.Kubeconfig())
}
