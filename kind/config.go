// Package kind runs the Trousseau appliance on a kind cluster: it generates
// the cluster definition from kind's own v1alpha4 types and drives the flow
// create → load image → dev Vault → plugin → flip to KMS → migrate → prove.
package kind

import (
	"fmt"
	"path/filepath"
	"strconv"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
)

// NodeImage is the kindest/node image kind v0.33.0 pins for Kubernetes
// 1.37 (tag and digest). Taking it from kind's own defaults keeps it in step
// with the kind module version in go.mod.
const NodeImage = defaults.Image

// ConfigOptions shapes the generated cluster.
type ConfigOptions struct {
	// Name of the kind cluster.
	Name string
	// StateDir is the absolute host directory holding what the nodes mount.
	// kind resolves a relative hostPath against the process's working
	// directory, so a relative StateDir is refused.
	StateDir string
	// ControlPlanes is the number of control-plane nodes; more than one is
	// an HA cluster behind kind's load balancer. 1 when zero.
	ControlPlanes int
	// NodeImage overrides NodeImage (CI runs older Kubernetes minors).
	NodeImage string
}

// Volume names in the apiserver pod.
const (
	socketVolume           = "trousseau-socket"
	encryptionConfigVolume = "trousseau-encryption-config"
)

// EncryptionConfigHostDir is the host directory every control-plane node
// mounts at controlplane.EncryptionConfigDir. All apiservers read the same
// file, so flipping the mode is one write.
func (o ConfigOptions) EncryptionConfigHostDir() string {
	return filepath.Join(o.StateDir, "encryption")
}

// SocketHostDir is the host directory control-plane node i (0-based) mounts
// at controlplane.SocketDir. Each node gets its own: one plugin per node
// creates its socket there, and two plugins must never share one.
func (o ConfigOptions) SocketHostDir(i int) string {
	return filepath.Join(o.StateDir, "nodes", "control-plane-"+strconv.Itoa(i), "socket")
}

func (o ConfigOptions) withDefaults() (ConfigOptions, error) {
	if o.Name == "" {
		o.Name = ClusterName
	}
	if o.ControlPlanes == 0 {
		o.ControlPlanes = 1
	}
	if o.ControlPlanes < 0 {
		return o, fmt.Errorf("ControlPlanes is %d: use 1, or 3 for an HA control plane", o.ControlPlanes)
	}
	if o.NodeImage == "" {
		o.NodeImage = NodeImage
	}
	if !filepath.IsAbs(o.StateDir) {
		return o, fmt.Errorf("state directory %q must be absolute: kind resolves a relative hostPath against the working directory", o.StateDir)
	}
	return o, nil
}

// Config is the kind cluster: control-plane nodes that mount the socket
// and encryption-config directories from the host, and a kubeadm patch that
// passes the encryption flags to kube-apiserver and mounts the same two
// directories into its pod (field case 18).
func Config(opts ConfigOptions) (*v1alpha4.Cluster, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	patch, err := KubeadmPatch()
	if err != nil {
		return nil, err
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta:             v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:                 opts.Name,
		KubeadmConfigPatches: []string{patch},
	}
	for i := range opts.ControlPlanes {
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{
			Role:  v1alpha4.ControlPlaneRole,
			Image: opts.NodeImage,
			ExtraMounts: []v1alpha4.Mount{
				{HostPath: opts.SocketHostDir(i), ContainerPath: controlplane.SocketDir},
				{HostPath: opts.EncryptionConfigHostDir(), ContainerPath: controlplane.EncryptionConfigDir, Readonly: true},
			},
		})
	}
	return cfg, nil
}

// Marshal renders cfg as the YAML kind reads.
func Marshal(cfg *v1alpha4.Cluster) ([]byte, error) {
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("render kind cluster config: %w", err)
	}
	return out, nil
}

// kubeadmVolume is one entry of ClusterConfiguration.apiServer.extraVolumes
// (kubeadm's HostPathMount).
type kubeadmVolume struct {
	Name      string `json:"name"`
	HostPath  string `json:"hostPath"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	PathType  string `json:"pathType"`
}

type kubeadmAPIServer struct {
	// ExtraArgs is the map form: kind converts it to v1beta4's list form.
	ExtraArgs    map[string]string `json:"extraArgs"`
	ExtraVolumes []kubeadmVolume   `json:"extraVolumes"`
}

// kubeadmClusterPatch is a merge patch for kubeadm's ClusterConfiguration.
// It has no apiVersion on purpose: kind silently skips a patch whose
// apiVersion differs from the document it generates, and the cluster would
// then run unencrypted.
type kubeadmClusterPatch struct {
	Kind      string           `json:"kind"`
	APIServer kubeadmAPIServer `json:"apiServer"`
}

// KubeadmPatch is the ClusterConfiguration patch: the encryption flags from
// controlplane.APIServerFlags and a DirectoryOrCreate volume for the socket
// directory and the encryption-config directory. Paths inside the node equal
// paths on a kubeadm host, so the same flags serve both.
func KubeadmPatch() (string, error) {
	p := kubeadmClusterPatch{
		Kind: "ClusterConfiguration",
		APIServer: kubeadmAPIServer{
			ExtraArgs: controlplane.APIServerFlags(controlplane.EncryptionConfigDir),
			ExtraVolumes: []kubeadmVolume{
				{Name: socketVolume, HostPath: controlplane.SocketDir, MountPath: controlplane.SocketDir, PathType: "DirectoryOrCreate"},
				{Name: encryptionConfigVolume, HostPath: controlplane.EncryptionConfigDir, MountPath: controlplane.EncryptionConfigDir, ReadOnly: true, PathType: "DirectoryOrCreate"},
			},
		},
	}
	out, err := yaml.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("render kubeadm ClusterConfiguration patch: %w", err)
	}
	return string(out), nil
}
