package kind

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/kind/pkg/cluster"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/migrate"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// Up implements runtime.Runtime with plan A of facts.md §3: kubeadm writes
// Secrets before any pod can run, so the cluster boots identity-only with
// automatic reload; then the dev Vault and the plugin are installed, the
// config is flipped to KMS first, existing Secrets are migrated and etcd is
// checked. Every step is idempotent, so Up on a running cluster repairs.
func (k *Kind) Up(ctx context.Context, mode controlplane.Mode) error {
	exists, err := k.clusterExists()
	if err != nil {
		return err
	}
	if !exists {
		if err := k.p.Step(fmt.Sprintf("create kind cluster %q (%d control-plane node(s), %s), Secrets identity-only",
			k.opts.Name, max(k.opts.ControlPlanes, 1), k.nodeImage()), func() error { return k.create() }); err != nil {
			return err
		}
	} else {
		k.p.Say("▸ kind cluster %q exists: reusing it", k.opts.Name)
	}
	if err := k.p.Step("build the plugin image and load it into the nodes", func() error { return k.buildAndLoadImage(ctx) }); err != nil {
		return err
	}
	cs, err := runtime.Clientset(k)
	if err != nil {
		return err
	}
	if err := untaintControlPlanes(ctx, cs); err != nil {
		return err
	}
	if err := k.p.Step(fmt.Sprintf("install the %s Vault (charts/vault-dev, Helm configmap storage)", k.vaultMode), func() error { return k.installVault(ctx, cs) }); err != nil {
		return err
	}
	if k.vaultMode == vaultDev {
		k.p.Say("  ! dev-mode Vault keeps its keys in memory: if its pod restarts, the Secrets it encrypted are unreadable (%s=%s keeps them)", EnvVaultMode, vaultPersistent)
	} else {
		k.p.Say("  ! the persistent Vault's unseal key and root token are in %s: without that file its data is lost", k.path("vault", "init.json"))
	}
	if err := k.p.Step("bootstrap Transit, the plugin policy and Kubernetes auth", func() error { return k.bootstrapVault(ctx) }); err != nil {
		return err
	}
	if err := k.p.Step("install charts/trousseau and wait for the plugin's /readyz", func() error { return k.installPlugin(ctx, cs) }); err != nil {
		return err
	}
	if mode == controlplane.IdentityOnly {
		return k.SetEncryptionMode(ctx, mode)
	}
	before, err := k.apiserverConfigs(ctx)
	if err != nil {
		return err
	}
	changed, err := k.writeEncryptionConfig(mode)
	if err != nil {
		return err
	}
	content, err := os.ReadFile(k.encryptionFile())
	if err != nil {
		return fmt.Errorf("read back %s: %w", k.encryptionFile(), err)
	}
	if err := k.p.Step("switch to KMS first and wait until every apiserver runs it (automatic reload polls each minute)", func() error {
		return waitReload(ctx, before, encryptionConfigHash(content), changed, k.apiserverConfigs)
	}); err != nil {
		return err
	}
	if err := k.p.Step("migrate existing Secrets (rewrite each unchanged)", func() error { _, err := migrate.Secrets(ctx, cs); return err }); err != nil {
		return err
	}
	return k.p.Step("prove from etcd: every Secret starts with "+etcdproof.Prefix, func() error { return k.proveEncrypted(ctx) })
}

func (k *Kind) nodeImage() string {
	if k.opts.NodeImage != "" {
		return k.opts.NodeImage
	}
	return NodeImage
}

func (k *Kind) clusterExists() (bool, error) {
	names, err := k.provider.List()
	if err != nil {
		return false, fmt.Errorf("list kind clusters: %w", err)
	}
	return slices.Contains(names, k.opts.Name), nil
}

// create makes the host directories the nodes mount, writes the
// identity-only EncryptionConfiguration the apiserver boots with, and
// creates the cluster.
func (k *Kind) create() error {
	cfg, err := Config(k.opts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(k.opts.EncryptionConfigHostDir(), 0o755); err != nil {
		return fmt.Errorf("create host mount %s: %w", k.opts.EncryptionConfigHostDir(), err)
	}
	// Socket directories are private to the user running mage; the plugin
	// runs as that user (see pluginValues).
	for i := range cfg.Nodes {
		d := k.opts.SocketHostDir(i)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create host mount %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
	}
	if _, err := k.writeEncryptionConfig(controlplane.IdentityOnly); err != nil {
		return err
	}
	err = k.provider.Create(k.opts.Name,
		cluster.CreateWithV1Alpha4Config(cfg),
		cluster.CreateWithKubeconfigPath(k.Kubeconfig()),
		cluster.CreateWithWaitForReady(3*time.Minute),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false))
	if err != nil {
		return fmt.Errorf("kind create cluster %s: %w\nFix: %s, then retry; `docker ps -a` shows leftover nodes", k.opts.Name, err, k.downHint())
	}
	return nil
}

// writeEncryptionConfig replaces the EncryptionConfiguration atomically
// (write, then rename in the mounted directory, which is why the directory
// and not the file is mounted) and reports whether its content changed.
func (k *Kind) writeEncryptionConfig(mode controlplane.Mode) (bool, error) {
	cfg, err := controlplane.EncryptionConfig(mode, controlplane.SocketPath())
	if err != nil {
		return false, err
	}
	old, err := os.ReadFile(k.encryptionFile())
	if err == nil && bytes.Equal(old, cfg) {
		return false, nil
	}
	dir := filepath.Dir(k.encryptionFile())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(dir, ".encryption-config-*")
	if err != nil {
		return false, fmt.Errorf("write EncryptionConfiguration: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(cfg); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp.Name(), k.encryptionFile()); err != nil {
		return false, fmt.Errorf("replace %s: %w", k.encryptionFile(), err)
	}
	return true, nil
}

// SetEncryptionMode implements runtime.Runtime: every apiserver reads the
// one shared file and reloads it within about a minute.
func (k *Kind) SetEncryptionMode(_ context.Context, mode controlplane.Mode) error {
	_, err := k.writeEncryptionConfig(mode)
	return err
}

// controlPlaneTaint is the taint kubeadm puts on every control-plane node.
const controlPlaneTaint = "node-role.kubernetes.io/control-plane"

// untaintControlPlanes lets ordinary pods (the dev Vault, the chart's helm
// test pod, the e2e's workloads) run on the control-plane nodes. The
// cluster has no workers, and kind removes kubeadm's control-plane taint
// only from a single-node cluster: with 3 control planes every such pod
// would stay Pending and the Helm wait would time out.
func untaintControlPlanes(ctx context.Context, cs kubernetes.Interface) error {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range list.Items {
		if !slices.ContainsFunc(n.Spec.Taints, isControlPlaneTaint) {
			continue
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Taints = slices.DeleteFunc(cur.Spec.Taints, isControlPlaneTaint)
			_, err = cs.CoreV1().Nodes().Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("remove the control-plane taint from node %s: %w", n.Name, err)
		}
	}
	return nil
}

func isControlPlaneTaint(t corev1.Taint) bool {
	return t.Key == controlPlaneTaint && t.Effect == corev1.TaintEffectNoSchedule
}
