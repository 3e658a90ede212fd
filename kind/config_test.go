package kind

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/charts"
	"github.com/trousseau-io/trousseau/plugin/config"
)

func testConfig(t *testing.T, controlPlanes int) (ConfigOptions, *v1alpha4.Cluster) {
	t.Helper()
	opts := ConfigOptions{Name: "trousseau-test", StateDir: t.TempDir(), ControlPlanes: controlPlanes}
	cfg, err := Config(opts)
	if err != nil {
		t.Fatalf("Config: %v", err)
	}
	return opts, cfg
}

// decodeStrict decodes exactly as kind's config loader does
// (pkg/internal/apis/config/encoding.Parse): yaml.v3 with KnownFields.
func decodeStrict(t *testing.T, raw []byte) *v1alpha4.Cluster {
	t.Helper()
	d := yamlv3.NewDecoder(bytes.NewReader(raw))
	d.KnownFields(true)
	var got v1alpha4.Cluster
	if err := d.Decode(&got); err != nil {
		t.Fatalf("kind's strict decoding rejects the generated config: %v\n%s", err, raw)
	}
	return &got
}

func TestConfigDecodesStrictlyIntoKindTypes(t *testing.T) {
	for _, n := range []int{1, 3} {
		_, cfg := testConfig(t, n)
		raw, err := Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeStrict(t, raw)
		if !reflect.DeepEqual(got, cfg) {
			t.Fatalf("round trip through kind's decoder changed the config:\nwant %+v\ngot  %+v", cfg, got)
		}
		if len(got.Nodes) != n {
			t.Fatalf("want %d control-plane nodes, got %d", n, len(got.Nodes))
		}
		for _, node := range got.Nodes {
			if node.Role != v1alpha4.ControlPlaneRole || node.Image != NodeImage {
				t.Fatalf("node %+v: want role control-plane and image %s", node, NodeImage)
			}
		}
	}
}

func TestNodeImageIsKind033Kubernetes137Pinned(t *testing.T) {
	if !strings.HasPrefix(NodeImage, "kindest/node:v1.37.") || !strings.Contains(NodeImage, "@sha256:") {
		t.Fatalf("NodeImage %q: want kindest/node:v1.37.x pinned by digest", NodeImage)
	}
}

// fakeDocker puts a docker CLI on PATH that answers what kind asks before
// it validates and provisions (info, ps, image inspect) and refuses
// everything after, so kind's real Create runs its own config parsing and
// validation here without an engine.
func fakeDocker(t *testing.T) (logFile string) {
	t.Helper()
	dir := t.TempDir()
	logFile = filepath.Join(dir, "calls.log")
	script := `#!/bin/sh
echo "$*" >> "` + logFile + `"
case "$1" in
  info) echo '{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true,"SecurityOptions":["name=seccomp,profile=default"]}' ;;
  ps) ;;
  inspect) ;;
  *) echo "fake docker: stop before '$1'" >&2; exit 3 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return logFile
}

// TestKindValidationAcceptsConfig feeds the generated YAML to kind's public
// cluster.Create (CreateWithRawConfig): kind decodes it strictly, defaults
// it and runs its own Validate before provisioning. Reaching the image and
// network steps proves validation passed; a broken config is the control.
func TestKindValidationAcceptsConfig(t *testing.T) {
	logFile := fakeDocker(t)
	// On a failed create kind deletes the cluster and its kubeconfig entry.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
	_, cfg := testConfig(t, 3)
	raw, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := cluster.NewProvider(cluster.ProviderWithDocker())
	err = p.Create(cfg.Name, cluster.CreateWithRawConfig(raw), cluster.CreateWithDisplayUsage(false), cluster.CreateWithDisplaySalutation(false))
	calls, _ := os.ReadFile(logFile)
	if err == nil {
		t.Fatal("Create succeeded against a fake docker")
	}
	if !strings.Contains(string(calls), "inspect --type=image "+NodeImage) || !strings.Contains(string(calls), "network") {
		t.Fatalf("kind stopped before provisioning (validation failed?): %v\ndocker calls:\n%s", err, calls)
	}

	// Control: kind's validation does reject a bad node, so the pass above means something.
	bad := strings.Replace(string(raw), "role: control-plane", "role: master", 1)
	err = p.Create(cfg.Name, cluster.CreateWithRawConfig([]byte(bad)))
	if err == nil || !strings.Contains(err.Error(), "not a valid node role") {
		t.Fatalf("kind accepted an invalid role, or failed otherwise: %v", err)
	}
}

func TestKubeadmPatchHasNoAPIVersionAndMapExtraArgs(t *testing.T) {
	_, cfg := testConfig(t, 1)
	if len(cfg.KubeadmConfigPatches) != 1 {
		t.Fatalf("want one kubeadm patch, got %d", len(cfg.KubeadmConfigPatches))
	}
	var patch map[string]any
	if err := yaml.Unmarshal([]byte(cfg.KubeadmConfigPatches[0]), &patch); err != nil {
		t.Fatal(err)
	}
	if _, ok := patch["apiVersion"]; ok {
		t.Fatalf("kubeadm patch carries apiVersion; kind would skip it silently:\n%s", cfg.KubeadmConfigPatches[0])
	}
	if patch["kind"] != "ClusterConfiguration" {
		t.Fatalf("patch kind = %v, want ClusterConfiguration", patch["kind"])
	}
	args, ok := patch["apiServer"].(map[string]any)["extraArgs"].(map[string]any)
	if !ok {
		t.Fatalf("apiServer.extraArgs is not a map:\n%s", cfg.KubeadmConfigPatches[0])
	}
	want := controlplane.APIServerFlags(controlplane.EncryptionConfigDir)
	if len(args) != len(want) {
		t.Fatalf("extraArgs %v, want %v", args, want)
	}
	for k, v := range want {
		if args[k] != v {
			t.Fatalf("extraArgs[%s] = %v, want %q", k, args[k], v)
		}
	}
}

// TestFieldCase18KindEveryAPIServerPathIsMounted: every path the apiserver
// flags name is inside an extraVolume of the apiserver pod, and every
// extraVolume's hostPath is an extraMount of every control-plane node,
// whose host side is an absolute path under the state directory.
func TestFieldCase18KindEveryAPIServerPathIsMounted(t *testing.T) {
	for _, n := range []int{1, 3} {
		opts, cfg := testConfig(t, n)
		var patch kubeadmClusterPatch
		if err := yaml.UnmarshalStrict([]byte(cfg.KubeadmConfigPatches[0]), &patch); err != nil {
			t.Fatal(err)
		}
		covered := func(p string) bool {
			for _, v := range patch.APIServer.ExtraVolumes {
				if p == v.MountPath || strings.HasPrefix(p, v.MountPath+"/") {
					return true
				}
			}
			return false
		}
		for flag, v := range patch.APIServer.ExtraArgs {
			if path.IsAbs(v) && !covered(v) {
				t.Errorf("flag --%s=%s names a path no extraVolume mounts", flag, v)
			}
		}
		if !covered(controlplane.SocketPath()) {
			t.Errorf("the plugin socket %s is not in an apiserver extraVolume", controlplane.SocketPath())
		}
		for _, v := range patch.APIServer.ExtraVolumes {
			if v.PathType != "DirectoryOrCreate" {
				t.Errorf("extraVolume %s pathType %q, want DirectoryOrCreate", v.Name, v.PathType)
			}
		}
		sockets := map[string]bool{}
		for i, node := range cfg.Nodes {
			mounts := map[string]v1alpha4.Mount{}
			for _, m := range node.ExtraMounts {
				mounts[m.ContainerPath] = m
				if !filepath.IsAbs(m.HostPath) || !strings.HasPrefix(m.HostPath, opts.StateDir+string(filepath.Separator)) {
					t.Errorf("node %d: extraMount hostPath %q must be absolute and under %s", i, m.HostPath, opts.StateDir)
				}
			}
			for _, v := range patch.APIServer.ExtraVolumes {
				if _, ok := mounts[v.HostPath]; !ok {
					t.Errorf("node %d: apiserver volume %s (hostPath %s) is not an extraMount of the node", i, v.Name, v.HostPath)
				}
			}
			s := mounts[controlplane.SocketDir].HostPath
			if sockets[s] {
				t.Errorf("node %d shares socket host dir %s with another node", i, s)
			}
			sockets[s] = true
		}
	}
}

// TestSocketPathAgreesAcrossEncryptionConfigChartAndPlugin: the endpoint the
// apiserver dials, the chart's hostPath + socket file and the plugin's
// listen address in the chart-rendered config are the same path, and it is
// inside the node's socket mount.
func TestSocketPathAgreesAcrossEncryptionConfigChartAndPlugin(t *testing.T) {
	raw, err := controlplane.EncryptionConfig(controlplane.KMSFirst, controlplane.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	var ec apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(raw, &ec); err != nil {
		t.Fatal(err)
	}
	endpoint := strings.TrimPrefix(ec.Resources[0].Providers[0].KMS.Endpoint, "unix://")

	ds := renderDaemonSet(t, pluginValues("sha256:x", 1000, 1000))
	var hostDir string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "socket-dir" && v.HostPath != nil {
			hostDir = v.HostPath.Path
		}
	}
	pc, err := charts.PluginConfig(pluginValues("sha256:x", 1000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	var plugin config.Config
	if err := yaml.UnmarshalStrict(pc, &plugin); err != nil {
		t.Fatal(err)
	}
	chartSocket := path.Join(hostDir, controlplane.SocketFile)
	if endpoint != chartSocket || endpoint != plugin.Socket.Path {
		t.Fatalf("socket paths disagree: EncryptionConfiguration %s, chart hostPath %s, plugin config %s", endpoint, chartSocket, plugin.Socket.Path)
	}
	_, cfg := testConfig(t, 1)
	for _, m := range cfg.Nodes[0].ExtraMounts {
		if m.ContainerPath == path.Dir(endpoint) {
			return
		}
	}
	t.Fatalf("socket dir %s is not an extraMount of the control-plane node", path.Dir(endpoint))
}

func TestConfigRefusesRelativeStateDir(t *testing.T) {
	_, err := Config(ConfigOptions{StateDir: ".trousseau/kind"})
	if err == nil || !strings.Contains(err.Error(), "must be absolute") {
		t.Fatalf("want an absolute-path error, got %v", err)
	}
}
