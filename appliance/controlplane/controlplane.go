// Package controlplane is the one source of truth for how kube-apiserver is
// wired to Trousseau: the EncryptionConfiguration, the apiserver flags and the
// paths they name. The local runtime, the kind runtime, the chart tests and
// the static-pod bundle all read them from here, so they cannot drift.
package controlplane

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

const (
	// ProviderName is the kms provider name in the EncryptionConfiguration.
	// It is part of every etcd value ("k8s:enc:kms:v2:trousseau:"), so it must
	// never be renamed once data is written.
	ProviderName = "trousseau"

	// SocketDir is the directory of the plugin socket on a control-plane
	// host. The chart's hostPath, the kind extraMount and the apiserver
	// extraVolume all use it.
	SocketDir = "/var/run/trousseau"
	// SocketFile is the socket's file name inside SocketDir.
	SocketFile = "kms.sock"

	// EncryptionConfigDir holds the EncryptionConfiguration on a control-plane
	// host. The directory, not the file, is mounted, because a single-file
	// bind mount keeps the old inode when the file is replaced and automatic
	// reload would never see the change.
	EncryptionConfigDir = "/etc/kubernetes/trousseau"
	// EncryptionConfigFile is the file name inside EncryptionConfigDir.
	EncryptionConfigFile = "encryption-config.yaml"

	// KMSTimeout is the apiserver's per-call deadline for the plugin. The
	// plugin's Vault timeouts are set below it.
	KMSTimeout = 3 * time.Second
)

// SocketPath is the default plugin socket path on a control-plane host.
func SocketPath() string { return path.Join(SocketDir, SocketFile) }

// Mode says which provider writes.
type Mode string

const (
	// IdentityOnly stores Secrets unencrypted and lists no kms provider. It
	// is how a cluster boots before the plugin can run (plan A): kubeadm
	// writes Secrets before any pod runs, and an unreachable kms provider
	// would fail the apiserver's /healthz (and an HA load balancer's probe)
	// until the plugin is installed.
	IdentityOnly Mode = "identity"
	// KMSFirst writes with Trousseau and still reads identity-stored data,
	// so a cluster can migrate without downtime.
	KMSFirst Mode = "kms"
)

// EncryptedResources are the resources Trousseau encrypts.
var EncryptedResources = []string{"secrets"}

// EncryptionConfig renders the EncryptionConfiguration for mode. socketPath is
// the plugin socket as the apiserver sees it.
func EncryptionConfig(mode Mode, socketPath string) ([]byte, error) {
	if !path.IsAbs(socketPath) {
		return nil, fmt.Errorf("plugin socket path %q must be absolute", socketPath)
	}
	kms := apiserverv1.ProviderConfiguration{KMS: &apiserverv1.KMSConfiguration{
		APIVersion: "v2",
		Name:       ProviderName,
		Endpoint:   "unix://" + socketPath,
		Timeout:    &metav1.Duration{Duration: KMSTimeout},
	}}
	identity := apiserverv1.ProviderConfiguration{Identity: &apiserverv1.IdentityConfiguration{}}
	var providers []apiserverv1.ProviderConfiguration
	switch mode {
	case IdentityOnly:
		providers = []apiserverv1.ProviderConfiguration{identity}
	case KMSFirst:
		providers = []apiserverv1.ProviderConfiguration{kms, identity}
	default:
		return nil, fmt.Errorf("unknown encryption mode %q: use %q or %q", mode, IdentityOnly, KMSFirst)
	}
	cfg := apiserverv1.EncryptionConfiguration{
		TypeMeta:  metav1.TypeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "EncryptionConfiguration"},
		Resources: []apiserverv1.ResourceConfiguration{{Resources: EncryptedResources, Providers: providers}},
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("render EncryptionConfiguration: %w", err)
	}
	return out, nil
}

// Args renders flags as sorted "--name=value" arguments, the form a
// command line and a static-pod manifest take.
func Args(flags map[string]string) []string {
	args := make([]string, 0, len(flags))
	for _, k := range slices.Sorted(maps.Keys(flags)) {
		args = append(args, "--"+k+"="+flags[k])
	}
	return args
}

// APIServerFlags are the encryption flags every runtime passes to
// kube-apiserver, without leading dashes. configDir is the directory holding
// EncryptionConfigFile as the apiserver sees it.
func APIServerFlags(configDir string) map[string]string {
	return map[string]string{
		"encryption-provider-config":                  path.Join(configDir, EncryptionConfigFile),
		"encryption-provider-config-automatic-reload": "true",
	}
}
