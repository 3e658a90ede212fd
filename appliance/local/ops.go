package local

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// Status implements runtime.Runtime.
func (l *Local) Status(ctx context.Context) (runtime.Status, error) {
	s, err := l.loadState()
	if err != nil {
		return runtime.Status{}, err
	}
	st := runtime.Status{Runtime: l.Name(), Kubeconfig: l.Kubeconfig(), Logs: l.logsWhere()}
	addr := map[string]string{
		etcdName: s.etcdEndpoint(), vaultName: s.VaultAddr,
		pluginName: l.socketPath() + " (ops http://" + s.opsAddr() + ")", apiserverName: s.apiserverURL(),
	}
	if s.EtcdClientPort == 0 {
		addr = map[string]string{}
	}
	for _, c := range components {
		comp := runtime.Component{Name: c, Address: addr[c]}
		pid := l.pidOf(c)
		if pid == 0 {
			comp.Detail = "not running"
			if old := readPID(l.pidFile(c)); old != 0 {
				comp.Detail = fmt.Sprintf("stopped (pid %d is gone; log %s)", old, l.logFile(c))
			}
			st.Components = append(st.Components, comp)
			continue
		}
		comp.Running, comp.ID = true, strconv.Itoa(pid)
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var health error
		switch c {
		case pluginName:
			health = httpOK(cctx, http.DefaultClient, "http://"+s.opsAddr()+"/readyz")
		case apiserverName:
			health = l.apiserverReady(cctx, s)
		case etcdName:
			health = httpOK(cctx, http.DefaultClient, s.etcdEndpoint()+"/health")
		case vaultName:
			health = httpOK(cctx, http.DefaultClient, s.VaultAddr+"/v1/sys/health")
		}
		comp.Unhealthy = health != nil
		comp.Detail = healthWord(health)
		if c == pluginName {
			if ps, err := l.PluginStatus(cctx); err == nil {
				comp.Detail += ", key_id " + ps.KeyID
			}
		}
		cancel()
		st.Components = append(st.Components, comp)
	}
	return st, nil
}

func healthWord(err error) string {
	if err != nil {
		return "unhealthy: " + err.Error()
	}
	return "healthy"
}

// EtcdList implements runtime.Runtime by reading etcd directly.
func (l *Local) EtcdList(ctx context.Context, prefix string) ([]runtime.KV, error) {
	s, err := l.loadState()
	if err != nil {
		return nil, err
	}
	if err := l.requireRunning(etcdName); err != nil {
		return nil, err
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.etcdEndpoint()}, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", s.etcdEndpoint(), err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list etcd keys under %s: %w (is the stack up? `go tool mage status`)", prefix, err)
	}
	kvs := make([]runtime.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs = append(kvs, runtime.KV{Key: string(kv.Key), Value: kv.Value})
	}
	return kvs, nil
}

// SetEncryptionMode implements runtime.Runtime.
func (l *Local) SetEncryptionMode(_ context.Context, mode controlplane.Mode) error {
	return l.writeEncryptionConfig(mode)
}

// StopAPIServer implements runtime.Runtime.
func (l *Local) StopAPIServer(ctx context.Context) error {
	return stop(ctx, l.pidFile(apiserverName), l.binOf(apiserverName), syscall.SIGTERM, stopGrace)
}

// StartAPIServer implements runtime.Runtime.
func (l *Local) StartAPIServer(context.Context) error {
	s, err := l.loadState()
	if err != nil {
		return err
	}
	if l.pidOf(apiserverName) != 0 {
		return fmt.Errorf("kube-apiserver is already running")
	}
	return l.launchAPIServer(s)
}

// SignalPlugin implements runtime.Runtime.
func (l *Local) SignalPlugin(ctx context.Context, sig syscall.Signal) error {
	return stop(ctx, l.pidFile(pluginName), l.binOf(pluginName), sig, stopGrace)
}

// StartPlugin implements runtime.Runtime. It reuses the built binary and
// rendered config of the running stack.
func (l *Local) StartPlugin(context.Context) error {
	if l.pidOf(pluginName) != 0 {
		return fmt.Errorf("the plugin is already running")
	}
	return l.launchPlugin()
}

// PluginID implements runtime.Runtime.
func (l *Local) PluginID(context.Context) (string, error) {
	pid := l.pidOf(pluginName)
	if pid == 0 {
		return "", fmt.Errorf("the plugin is not running")
	}
	return strconv.Itoa(pid), nil
}

// PluginOps implements runtime.Runtime.
func (l *Local) PluginOps() string {
	s, _ := l.loadState()
	return "http://" + s.opsAddr()
}

// PluginStatus implements runtime.Runtime.
func (l *Local) PluginStatus(ctx context.Context) (runtime.PluginStatus, error) {
	if err := l.requireRunning(pluginName); err != nil {
		return runtime.PluginStatus{}, err
	}
	return runtime.PluginStatusAt(ctx, l.socketPath())
}

// PauseVault implements runtime.Runtime with SIGSTOP: the dev Vault keeps
// its keys in memory, so a real stop would lose them. A stopped process
// still has its socket open, so clients see connections that hang rather
// than refusals, the harder case for the plugin's deadlines.
func (l *Local) PauseVault(context.Context) error { return l.signalVault(syscall.SIGSTOP) }

// ResumeVault implements runtime.Runtime.
func (l *Local) ResumeVault(context.Context) error { return l.signalVault(syscall.SIGCONT) }

func (l *Local) signalVault(sig syscall.Signal) error {
	pid := l.pidOf(vaultName)
	if pid == 0 {
		return fmt.Errorf("the dev Vault is not running")
	}
	return syscall.Kill(pid, sig)
}

// pidOf returns the pid of the named component if it runs, else 0.
func (l *Local) pidOf(name string) int { return running(l.pidFile(name), l.binOf(name)) }

// requireRunning turns "connection refused" into what a person should do.
func (l *Local) requireRunning(name string) error {
	if l.pidOf(name) != 0 {
		return nil
	}
	if readPID(l.pidFile(name)) != 0 {
		return fmt.Errorf("%s of the local stack has stopped (log: %s). "+
			"Fix: `go tool mage demo` restarts only what is missing and keeps your Secrets "+
			"(`go tool mage down` would discard everything, Secrets included)", name, l.logFile(name))
	}
	return fmt.Errorf("%s is not running: the local stack is down. Fix: start it with `go tool mage demo`", name)
}
