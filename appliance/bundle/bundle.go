// Package bundle writes the GitOps bundle (dist/): the packaged charts,
// example Flux and Argo CD manifests, and the kubeadm-host files (the
// EncryptionConfiguration and the static-pod manifest), with SHA256SUMS.
// Every byte is a function of the repository, so two runs give the same
// checksums.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/charts"
)

// ChartRepository is where the release workflow pushes the packaged charts
// (an OCI registry); the Flux and Argo CD examples point at it.
const ChartRepository = "ghcr.io/trousseau-io/charts"

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
	if err := kubeadmFiles(files); err != nil {
		return nil, err
	}

	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
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
	"vault": map[string]any{"address": "https://vault.example.com:8200"},
	"auth":  map[string]any{"method": "kubernetes", "kubernetes": map[string]any{"role": "trousseau", "audience": "vault"}},
}

const gitopsHeader = `# Example: install Trousseau from the packaged chart with %s.
# Before it syncs, every kube-apiserver must mount %s and %s
# (see kubeadm/ and the chart's NOTES.txt). Set vault.address to your Vault.
`

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
	return yamlDocs(fmt.Sprintf(gitopsHeader, "Flux", controlplane.SocketDir, controlplane.EncryptionConfigDir), repo, release)
}

func argoApplication(version string) ([]byte, error) {
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
	return yamlDocs(fmt.Sprintf(gitopsHeader, "Argo CD", controlplane.SocketDir, controlplane.EncryptionConfigDir), app)
}

// kubeadmFiles are the files for a kubeadm control-plane host: both
// EncryptionConfiguration stages (identity first to roll out, then KMS
// first), the static-pod manifest, the plugin config it reads and the
// instructions.
func kubeadmFiles(files map[string][]byte) error {
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
	pod, ok := out[charts.Trousseau+"/templates/static-pod.yaml"]
	if !ok {
		return fmt.Errorf("chart %s rendered no static-pod manifest", charts.Trousseau)
	}
	files[kubeadmDir+"/trousseau-static-pod.yaml"] = []byte(pod)
	// The chart's NOTES for this mode: where each file goes and the exact
	// apiserver flags and volumes.
	files[kubeadmDir+"/NOTES.txt"] = []byte(out[charts.Trousseau+"/templates/NOTES.txt"])
	cfg, err := charts.PluginConfig(staticPodValues)
	if err != nil {
		return err
	}
	files[kubeadmDir+"/trousseau.yaml"] = cfg
	return nil
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
