// Package bundle writes the GitOps bundle (dist/): the packaged charts,
// example Flux and Argo CD manifests, and the kubeadm-host files (the
// EncryptionConfiguration and the static-pod manifest), with SHA256SUMS.
// Every byte is a function of the repository, so two runs give the same
// checksums.
package bundle

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/charts"
	"github.com/trousseau-io/trousseau/plugin/config"
)

// ChartRepository is the OCI repository a Trousseau release would publish the
// packaged charts to; the Flux and Argo CD examples point at it. Nothing is
// published from this repository yet: push dist/charts/*.tgz to your own
// registry and replace it.
const ChartRepository = "ghcr.io/trousseau-io/charts"

// VaultPlaceholder is the Vault address of the examples. The chart has no
// default address, so that no cluster silently talks to a dev Vault; every
// example says to replace it.
const VaultPlaceholder = "https://vault.example.com:8200"

// Subdirectories and files of the bundle. Write replaces exactly these, so
// anything else in the output directory is left alone.
const (
	chartsDir  = "charts"
	gitopsDir  = "gitops"
	kubeadmDir = "kubeadm"
	sumsFile   = "SHA256SUMS"
)

// staticPodValues configure the static-pod example: AppRole with host files,
// because a static pod cannot use Kubernetes auth.
var staticPodValues = map[string]any{
	"deployment": map[string]any{"mode": "staticPod"},
	"auth":       map[string]any{"method": "approle"},
	"vault":      map[string]any{"address": VaultPlaceholder},
}

// Write writes the bundle into dir and returns the bundle's files, relative
// to dir and sorted, as listed in SHA256SUMS.
func Write(dir string) ([]string, error) {
	for _, d := range []string{chartsDir, gitopsDir, kubeadmDir, sumsFile} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return nil, fmt.Errorf("clear old bundle %s: %w", filepath.Join(dir, d), err)
		}
	}
	files := map[string][]byte{}
	for _, name := range []string{charts.Trousseau, charts.VaultDev} {
		rel, data, err := packageChart(name)
		if err != nil {
			return nil, err
		}
		files[rel] = data
	}
	version, err := chartVersion()
	if err != nil {
		return nil, err
	}
	if files[gitopsDir+"/flux-helmrelease.yaml"], err = fluxHelmRelease(version); err != nil {
		return nil, err
	}
	if files[gitopsDir+"/argocd-application.yaml"], err = argoApplication(version); err != nil {
		return nil, err
	}
	if err := kubeadmFiles(files, version); err != nil {
		return nil, err
	}

	names := slices.Sorted(maps.Keys(files))
	var sums strings.Builder
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, files[n], 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		h := sha256.Sum256(files[n])
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(h[:]), n)
	}
	if err := os.WriteFile(filepath.Join(dir, sumsFile), []byte(sums.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", sumsFile, err)
	}
	return names, nil
}

// packageChart is `helm package` through the SDK. The embedded files carry
// a fixed mtime (charts.ModTime) and the gzip header none, so the archive
// is reproducible.
func packageChart(name string) (string, []byte, error) {
	c, err := charts.Load(name)
	if err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp("", "trousseau-bundle-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	p, err := chartutil.Save(c, tmp)
	if err != nil {
		return "", nil, fmt.Errorf("package chart %s: %w", name, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", nil, err
	}
	return chartsDir + "/" + filepath.Base(p), data, nil
}

func chartVersion() (string, error) {
	c, err := charts.Load(charts.Trousseau)
	if err != nil {
		return "", err
	}
	return c.Metadata.Version, nil
}

// exampleValues are the values the GitOps examples set: the production
// DaemonSet with Kubernetes auth, pointing at the operator's Vault.
var exampleValues = map[string]any{
	"vault": map[string]any{"address": VaultPlaceholder},
	"auth":  map[string]any{"method": "kubernetes", "kubernetes": map[string]any{"role": "trousseau", "audience": "vault"}},
}

const gitopsHeader = `# Example: install Trousseau from the packaged chart with %s.
# Before it syncs, every kube-apiserver must mount %s and %s
# with the identity-first EncryptionConfiguration (the chart's NOTES.txt, step 1).
# Replace vault.address (a placeholder) with your Vault's https URL.
# ` + ChartRepository + ` is where a release would publish the chart; nothing
# is published yet: push dist/charts/trousseau-*.tgz to your own OCI registry
# (helm push dist/charts/trousseau-<version>.tgz oci://<registry>/charts)
# and point the repository below at it.
`

// gitopsHeaderFor is gitopsHeader for one GitOps tool.
func gitopsHeaderFor(tool string) string {
	return fmt.Sprintf(gitopsHeader, tool, controlplane.SocketDir, controlplane.EncryptionConfigDir)
}

func fluxHelmRelease(version string) ([]byte, error) {
	repo := map[string]any{
		"apiVersion": "source.toolkit.fluxcd.io/v1",
		"kind":       "HelmRepository",
		"metadata":   map[string]any{"name": "trousseau", "namespace": "flux-system"},
		"spec":       map[string]any{"type": "oci", "url": "oci://" + ChartRepository, "interval": "1h"},
	}
	release := map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2",
		"kind":       "HelmRelease",
		"metadata":   map[string]any{"name": "trousseau", "namespace": "flux-system"},
		"spec": map[string]any{
			"interval":         "10m",
			"targetNamespace":  charts.ReleaseNamespace,
			"releaseName":      charts.ReleaseName,
			"storageNamespace": charts.ReleaseNamespace,
			"chart": map[string]any{"spec": map[string]any{
				"chart": charts.Trousseau, "version": version,
				"sourceRef": map[string]any{"kind": "HelmRepository", "name": "trousseau"},
			}},
			"values": exampleValues,
		},
	}
	return yamlDocs(gitopsHeaderFor("Flux"), repo, release)
}

// argoHeader explains the Argo CD specifics of argoApplication.
const argoHeader = `#
# Argo CD: a Helm chart in an OCI registry is a repository of type helm
# with enableOCI, and its repoURL has no oci:// prefix (registry/path only).
# The repository Secret below declares that; add username/password to it
# for a private registry. Argo CD keeps repositories in Secrets, which
# Trousseau encrypts: while the plugin is down Argo CD cannot read this one,
# so keep a break-glass path (helm upgrade with the .tgz) to repair the plugin.
`

func argoApplication(version string) ([]byte, error) {
	repo := map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"metadata": map[string]any{
			"name": "trousseau-charts", "namespace": "argocd",
			"labels": map[string]any{"argocd.argoproj.io/secret-type": "repository"},
		},
		"stringData": map[string]any{"name": "trousseau", "type": "helm", "enableOCI": "true", "url": ChartRepository},
	}
	app := map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata":   map[string]any{"name": "trousseau", "namespace": "argocd"},
		"spec": map[string]any{
			"project": "default",
			"source": map[string]any{
				"repoURL": ChartRepository, "chart": charts.Trousseau, "targetRevision": version,
				"helm": map[string]any{"releaseName": charts.ReleaseName, "valuesObject": exampleValues},
			},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": charts.ReleaseNamespace},
			// No automated prune: removing the plugin makes every Secret unreadable.
			"syncPolicy": map[string]any{"syncOptions": []string{"ServerSideApply=true"}},
		},
	}
	return yamlDocs(gitopsHeaderFor("Argo CD")+argoHeader, repo, app)
}

// kubeadmFiles are the files for a kubeadm control-plane host: both
// EncryptionConfiguration stages (identity first to roll out, then KMS
// first), the static-pod manifest, the plugin config it reads and a README
// that walks the rollout with exactly these files.
func kubeadmFiles(files map[string][]byte, chartVersion string) error {
	for name, mode := range map[string]controlplane.Mode{
		"encryption-config.yaml":                controlplane.KMSFirst,
		"encryption-config-identity-first.yaml": controlplane.IdentityOnly,
	} {
		ec, err := controlplane.EncryptionConfig(mode, controlplane.SocketPath())
		if err != nil {
			return err
		}
		files[kubeadmDir+"/"+name] = ec
	}
	out, err := charts.Render(charts.Trousseau, staticPodValues)
	if err != nil {
		return fmt.Errorf("render the static-pod manifest: %w", err)
	}
	manifest, ok := out[charts.Trousseau+"/templates/static-pod.yaml"]
	if !ok {
		return fmt.Errorf("chart %s rendered no static-pod manifest", charts.Trousseau)
	}
	files[kubeadmDir+"/trousseau-static-pod.yaml"] = []byte(manifest)
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(manifest), &pod); err != nil {
		return fmt.Errorf("decode the rendered static-pod manifest: %w", err)
	}
	raw, err := charts.PluginConfig(staticPodValues)
	if err != nil {
		return err
	}
	var cfg config.Config
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		return fmt.Errorf("decode the rendered plugin config: %w", err)
	}
	files[kubeadmDir+"/trousseau.yaml"] = append([]byte(pluginConfigHeader), raw...)
	readme, err := kubeadmReadme(pod, cfg, chartVersion)
	if err != nil {
		return err
	}
	files[kubeadmDir+"/README.md"] = readme
	return nil
}

// pluginConfigHeader opens kubeadm/trousseau.yaml: the one value an operator
// must change is a placeholder, and the file is not usable until it is.
const pluginConfigHeader = `# Trousseau plugin config for the static pod (kubeadm/README.md, step 2).
# EDIT provider.vault.address: ` + VaultPlaceholder + ` is a placeholder.
# Use an https URL that resolves and routes from the control-plane host
# itself (the static pod uses the host resolver and starts before CoreDNS).
`

//go:embed kubeadm-README.md.tmpl
var kubeadmReadmeTemplate string

// kubeadmReadme fills the README from the rendered static pod and plugin
// config and from controlplane, so every path it names is the one the
// files next to it use.
func kubeadmReadme(pod corev1.Pod, cfg config.Config, chartVersion string) ([]byte, error) {
	flagList := controlplane.Args(controlplane.APIServerFlags(controlplane.EncryptionConfigDir))
	args := pod.Spec.Containers[0].Args
	var creds []string
	if a := cfg.Provider.Vault.Auth.AppRole; a != nil {
		creds = []string{a.RoleIDFile, a.SecretIDFile}
	}
	data := map[string]any{
		"ConfigDir":        controlplane.EncryptionConfigDir,
		"ConfigFile":       path.Join(controlplane.EncryptionConfigDir, controlplane.EncryptionConfigFile),
		"SocketDir":        controlplane.SocketDir,
		"Flags":            flagList,
		"PluginConfig":     args[len(args)-1],
		"ManifestFile":     "/etc/kubernetes/manifests/trousseau.yaml",
		"CredentialFiles":  creds,
		"ReadyzURL":        "http://" + cfg.Ops.Address + "/readyz",
		"VaultPlaceholder": VaultPlaceholder,
		"ChartVersion":     chartVersion,
		"EtcdPrefix":       etcdproof.Prefix,
		"Provider":         controlplane.ProviderName,
	}
	t, err := template.New("kubeadm-README.md").Option("missingkey=error").Parse(kubeadmReadmeTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse the kubeadm README template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("write the kubeadm README: %w", err)
	}
	return b.Bytes(), nil
}

func yamlDocs(header string, docs ...any) ([]byte, error) {
	var b strings.Builder
	b.WriteString(header)
	for i, d := range docs {
		out, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("render GitOps example: %w", err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(out)
	}
	return []byte(b.String()), nil
}
