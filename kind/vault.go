package kind

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/charts"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// vaultRootTokenSecret is the Secret (key "token") the vault-dev chart
// reads the dev root token from. The appliance creates it before the switch
// to KMS, outside Helm, so the token is never in a release record.
const vaultRootTokenSecret = "vault-dev-root-token"

// vaultInClusterAddr is the plugin's Vault address: charts/vault-dev's
// Service (release "vault" in namespace "vault").
const vaultInClusterAddr = "http://vault.vault.svc:8200"

// installVault installs charts/vault-dev. In dev mode it first creates the
// root token (kept on the host, 0600) and its Secret; in persistent mode it
// initialises Vault once and unseals it on every Up, with the material kept
// on the host (initAndUnseal).
func (k *Kind) installVault(ctx context.Context, cs kubernetes.Interface) error {
	if k.vaultMode == vaultPersistent {
		if err := k.helmApply(ctx, charts.VaultDev, VaultRelease, VaultNamespace, map[string]any{"mode": vaultPersistent}); err != nil {
			return err
		}
		c, err := k.vaultClient()
		if err != nil {
			return err
		}
		var token string
		err = waitFor(ctx, time.Minute, "the persistent Vault to answer through the apiserver proxy", func() (bool, error) {
			token, err = k.initAndUnseal(ctx, c)
			return err == nil, err
		})
		if err != nil {
			return err
		}
		return writePrivateFile(k.rootTokenFile(), []byte(token+"\n"))
	}
	if err := k.ensureRootToken(ctx, cs); err != nil {
		return err
	}
	return k.helmApply(ctx, charts.VaultDev, VaultRelease, VaultNamespace, map[string]any{
		"mode": vaultDev,
		"dev":  map[string]any{"rootTokenSecret": vaultRootTokenSecret},
	})
}

func (k *Kind) ensureRootToken(ctx context.Context, cs kubernetes.Interface) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: VaultNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", VaultNamespace, err)
	}
	_, getErr := cs.CoreV1().Secrets(VaultNamespace).Get(ctx, vaultRootTokenSecret, metav1.GetOptions{})
	_, readErr := os.ReadFile(k.rootTokenFile())
	switch {
	case getErr == nil && readErr == nil:
		return nil
	case getErr == nil:
		return fmt.Errorf("the cluster's dev Vault token Secret exists but %s is gone (%v): "+
			"the root token cannot be recovered. Start again: %s", k.rootTokenFile(), readErr, k.downHint())
	case !apierrors.IsNotFound(getErr):
		return fmt.Errorf("read Secret %s/%s: %w", VaultNamespace, vaultRootTokenSecret, getErr)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	token := "hvs.dev-" + hex.EncodeToString(b)
	if err := writePrivateFile(k.rootTokenFile(), []byte(token+"\n")); err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: vaultRootTokenSecret, Namespace: VaultNamespace},
		Data:       map[string][]byte{vaultTokenKey: []byte(token)},
	}
	if _, err := cs.CoreV1().Secrets(VaultNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Secret %s/%s: %w", VaultNamespace, vaultRootTokenSecret, err)
	}
	return nil
}

// VaultRoot implements runtime.Runtime.
func (k *Kind) VaultRoot(context.Context) (*vaultapi.Client, error) {
	token, err := os.ReadFile(k.rootTokenFile())
	if err != nil {
		return nil, fmt.Errorf("read the dev Vault root token: %w (is the stack up? `go tool mage status`)", err)
	}
	c, err := k.vaultClient()
	if err != nil {
		return nil, err
	}
	c.SetToken(strings.TrimSpace(string(token)))
	return c, nil
}

// vaultClient reaches Vault through the apiserver's service proxy with the
// admin kubeconfig, so nothing needs a port-forward or a host port. It
// carries no token.
func (k *Kind) vaultClient() (*vaultapi.Client, error) {
	rc, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	tr, err := rest.TransportFor(rc)
	if err != nil {
		return nil, err
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = strings.TrimSuffix(rc.Host, "/") + "/api/v1/namespaces/" + VaultNamespace + "/services/http:" + VaultRelease + ":8200/proxy"
	cfg.HttpClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	cfg.MaxRetries = 2
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	// DefaultConfig read VAULT_TOKEN from the environment; never send it here.
	c.ClearToken()
	return c, nil
}

// writePrivateFile writes secret material with mode 0600, atomically: a
// reader never sees half a token, and an existing file with a looser mode
// is replaced rather than written through (os.WriteFile keeps its mode).
func writePrivateFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// bootstrapVault prepares Transit, the least-privilege policy (vaultdev)
// and the Kubernetes auth role the chart's default auth uses: the plugin's
// ServiceAccount in kube-system, with the "vault" audience.
func (k *Kind) bootstrapVault(ctx context.Context) error {
	root, err := k.VaultRoot(ctx)
	if err != nil {
		return err
	}
	// The Deployment is Ready before its Service proxies to it; retry briefly.
	var creds *vaultdev.Credentials
	err = waitFor(ctx, time.Minute, "the dev Vault to answer through the apiserver proxy", func() (bool, error) {
		if err := os.MkdirAll(k.credentialsDir(), 0o700); err != nil {
			return false, err
		}
		creds, err = vaultdev.Bootstrap(ctx, root, vaultdev.BootstrapOptions{
			TransitMount: transitMount, KeyName: transitKey, CredentialsDir: k.credentialsDir(),
		})
		return err == nil, err
	})
	if err != nil {
		return err
	}
	auths, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list Vault auth methods: %w", err)
	}
	if _, ok := auths[vaultK8sMount+"/"]; !ok {
		if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, vaultK8sMount, &vaultapi.EnableAuthOptions{Type: "kubernetes"}); err != nil {
			return fmt.Errorf("enable Kubernetes auth at %s: %w", vaultK8sMount, err)
		}
	}
	// Vault reviews tokens with its own ServiceAccount token (the vault-dev
	// chart binds it to system:auth-delegator). The cluster CA comes from the
	// admin kubeconfig, the CA kube-apiserver serves with.
	rc, err := k.restConfig()
	if err != nil {
		return err
	}
	if len(rc.CAData) == 0 {
		return fmt.Errorf("kubeconfig %s carries no certificate-authority-data for Vault's Kubernetes auth", k.Kubeconfig())
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/"+vaultK8sMount+"/config", map[string]any{
		"kubernetes_host":    "https://kubernetes.default.svc",
		"kubernetes_ca_cert": string(rc.CAData),
	}); err != nil {
		return fmt.Errorf("configure Kubernetes auth: %w", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "auth/"+vaultK8sMount+"/role/"+vaultK8sRole, map[string]any{
		"bound_service_account_names":      []string{charts.ReleaseName},
		"bound_service_account_namespaces": []string{charts.ReleaseNamespace},
		"audience":                         "vault",
		"token_policies":                   []string{creds.PolicyName},
		"token_ttl":                        "1h",
	}); err != nil {
		return fmt.Errorf("write Kubernetes auth role %s: %w", vaultK8sRole, err)
	}
	return nil
}

// vaultNode is the kind node the dev Vault pod runs on.
func (k *Kind) vaultNode(ctx context.Context) (nodes.Node, error) {
	cs, err := runtime.Clientset(k)
	if err != nil {
		return nil, err
	}
	pods, err := cs.CoreV1().Pods(VaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + VaultRelease})
	if err != nil {
		return nil, fmt.Errorf("find the dev Vault pod: %w", err)
	}
	if len(pods.Items) == 0 || pods.Items[0].Spec.NodeName == "" {
		return nil, errors.New("the dev Vault pod is not scheduled: is the stack up? (`go tool mage status`)")
	}
	nodeName := pods.Items[0].Spec.NodeName
	all, err := k.provider.ListNodes(k.opts.Name)
	if err != nil {
		return nil, fmt.Errorf("list nodes of kind cluster %s: %w", k.opts.Name, err)
	}
	for _, n := range all {
		if n.String() == nodeName {
			return n, nil
		}
	}
	return nil, fmt.Errorf("node %s of the dev Vault pod is not a node of kind cluster %s", nodeName, k.opts.Name)
}

// signalVault stops or continues the Vault process. SIGSTOP keeps its
// in-memory keys, which a pod restart would lose; every request hangs, as
// with a network partition. The chart has no liveness probe in dev mode, so
// the kubelet does not restart it meanwhile.
func (k *Kind) signalVault(ctx context.Context, sig string) error {
	n, err := k.vaultNode(ctx)
	if err != nil {
		return err
	}
	_, pid, err := containerPID(n, "vault")
	if err != nil {
		return err
	}
	return killIn(n, sig, pid)
}

// PauseVault implements runtime.Runtime.
func (k *Kind) PauseVault(ctx context.Context) error { return k.signalVault(ctx, "STOP") }

// initAndUnseal is initAndUnseal on this instance's unseal material, with
// the command that starts over when that material is gone.
func (k *Kind) initAndUnseal(ctx context.Context, c *vaultapi.Client) (string, error) {
	token, err := initAndUnseal(ctx, c, k.path("vault", "init.json"))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w. Start over: %s", err, k.downHint())
	}
	return token, err
}

// ResumeVault implements runtime.Runtime. A persistent Vault that the
// kubelet restarted meanwhile (it has a liveness probe) comes back sealed,
// so it is unsealed again.
func (k *Kind) ResumeVault(ctx context.Context) error {
	err := k.signalVault(ctx, "CONT")
	if k.vaultMode != vaultPersistent {
		return err
	}
	c, cerr := k.vaultClient()
	if cerr != nil {
		return cerr
	}
	return waitFor(ctx, 2*time.Minute, "the persistent Vault to be unsealed", func() (bool, error) {
		_, err := k.initAndUnseal(ctx, c)
		return err == nil, err
	})
}
