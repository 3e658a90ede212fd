// Package charts embeds the Trousseau Helm charts and renders them with the
// Helm SDK, so the appliance, the bundle and the tests use the exact files
// that are published.
package charts

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"time"

	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

//go:embed all:trousseau all:vault-dev
var files embed.FS

// Names of the embedded charts.
const (
	Trousseau = "trousseau"
	VaultDev  = "vault-dev"
)

// Release is the release name and namespace Render uses: the plugin runs next
// to the other control-plane components.
const (
	ReleaseName      = "trousseau"
	ReleaseNamespace = "kube-system"
)

// ModTime is the fixed modification time of every file of a loaded chart,
// so that packaged charts are byte-for-byte reproducible.
var ModTime = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Load returns an embedded chart by name (Trousseau or VaultDev).
func Load(chartName string) (*chart.Chart, error) {
	var bufs []*archive.BufferedFile
	err := fs.WalkDir(files, chartName, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		rel := p[len(chartName)+1:]
		if path.Ext(rel) == ".go" || rel == ".helmignore" {
			return nil
		}
		bufs = append(bufs, &archive.BufferedFile{Name: rel, ModTime: ModTime, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded chart %q (known: %s, %s): %w", chartName, Trousseau, VaultDev, err)
	}
	sort.Slice(bufs, func(i, j int) bool { return bufs[i].Name < bufs[j].Name })
	c, err := loader.LoadFiles(bufs)
	if err != nil {
		return nil, fmt.Errorf("load chart %q: %w", chartName, err)
	}
	return c, nil
}

// Render renders an embedded chart as release "trousseau" in namespace
// "kube-system". values override the chart's values.yaml and are checked
// against its values.schema.json. The result maps template paths (for
// example "trousseau/templates/configmap.yaml") to manifests; empty
// manifests are dropped.
func Render(chartName string, values map[string]any) (map[string]string, error) {
	return RenderRelease(chartName, ReleaseName, ReleaseNamespace, values)
}

// RenderRelease is Render for another release name and namespace, e.g. the
// dev Vault release.
func RenderRelease(chartName, release, namespace string, values map[string]any) (map[string]string, error) {
	c, err := Load(chartName)
	if err != nil {
		return nil, err
	}
	if values == nil {
		values = map[string]any{}
	}
	top, err := chartutil.ToRenderValues(c, values,
		chartcommon.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, nil)
	if err != nil {
		return nil, fmt.Errorf("values for chart %s: %w", chartName, err)
	}
	out, err := engine.Engine{Strict: true}.Render(c, top)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", chartName, err)
	}
	for name, m := range out {
		if isBlank(m) {
			delete(out, name)
		}
	}
	return out, nil
}

// PluginConfig renders the trousseau chart with values and returns the
// plugin configuration file (key trousseau.yaml of its ConfigMap). The local
// runtime runs the plugin with it, so the chart's config is the tested one.
func PluginConfig(values map[string]any) ([]byte, error) {
	out, err := Render(Trousseau, values)
	if err != nil {
		return nil, err
	}
	const name = Trousseau + "/templates/configmap.yaml"
	m, ok := out[name]
	if !ok {
		return nil, fmt.Errorf("chart %s rendered no %s", Trousseau, name)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(m), &cm); err != nil {
		return nil, fmt.Errorf("decode %s: %w", name, err)
	}
	cfg, ok := cm.Data["trousseau.yaml"]
	if !ok {
		return nil, fmt.Errorf("%s has no trousseau.yaml key", name)
	}
	return []byte(cfg), nil
}

func isBlank(manifest string) bool {
	for _, r := range manifest {
		switch r {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}
