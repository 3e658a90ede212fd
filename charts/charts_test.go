package charts

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/plugin/config"
)

var (
	authModes       = []string{"kubernetes", "approle", "token", "cert"}
	deploymentModes = []string{"daemonSet", "staticPod"}
)

// vaultAddress is the one value without a default.
const vaultAddress = "https://vault.example:8200"

// minimal are the least values the chart renders with.
func minimal() map[string]any {
	return map[string]any{"vault": map[string]any{"address": vaultAddress}}
}

// valuesFor sets what each mode needs; cert auth needs a client certificate.
func valuesFor(auth, deployment string) map[string]any {
	v := map[string]any{
		"auth":       map[string]any{"method": auth},
		"deployment": map[string]any{"mode": deployment},
		"vault":      map[string]any{"address": vaultAddress},
	}
	if auth == "cert" {
		v["vault"] = map[string]any{"address": vaultAddress, "tls": map[string]any{
			"caFile": "/etc/trousseau/tls/ca.pem", "certFile": "/etc/trousseau/tls/client.pem", "keyFile": "/etc/trousseau/tls/client-key.pem",
		}}
	}
	return v
}

// combos are the valid auth × deployment pairs; static pods cannot use
// kubernetes auth.
func combos() [][2]string {
	var out [][2]string
	for _, d := range deploymentModes {
		for _, a := range authModes {
			if d == "staticPod" && a == "kubernetes" {
				continue
			}
			out = append(out, [2]string{a, d})
		}
	}
	return out
}

// decoded holds every rendered object, decoded strictly into its k8s.io/api type.
type decoded struct {
	configMap      *corev1.ConfigMap
	daemonSet      *appsv1.DaemonSet
	staticPod      *corev1.Pod
	service        *corev1.Service
	serviceAccount *corev1.ServiceAccount
	serviceMonitor map[string]any
	notes          string
	// raw is every rendered template by path, as Helm prints it.
	raw map[string]string
	// The `helm test` hook: its pod and the ServiceAccount and RBAC it runs with.
	testPod            *corev1.Pod
	testServiceAccount *corev1.ServiceAccount
	testRole           *rbacv1.Role
	testRoleBinding    *rbacv1.RoleBinding
}

func strict(t *testing.T, name, manifest string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(manifest), into); err != nil {
		t.Fatalf("%s does not decode strictly into %T: %v\n%s", name, into, err, manifest)
	}
}

func renderDecoded(t *testing.T, values map[string]any) decoded {
	t.Helper()
	out, err := Render(Trousseau, values)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	d := decoded{raw: out}
	for name, m := range splitDocs(out) {
		if strings.Contains(name, "NOTES.txt") {
			d.notes = m
			continue
		}
		var meta struct {
			APIVersion, Kind string
			Metadata         struct{ Annotations map[string]string }
		}
		if err := yaml.Unmarshal([]byte(m), &meta); err != nil {
			t.Fatalf("%s is not YAML: %v", name, err)
		}
		switch gvk := meta.APIVersion + "/" + meta.Kind; gvk {
		case "v1/ConfigMap":
			d.configMap = &corev1.ConfigMap{}
			strict(t, name, m, d.configMap)
		case "apps/v1/DaemonSet":
			d.daemonSet = &appsv1.DaemonSet{}
			strict(t, name, m, d.daemonSet)
		case "v1/Pod":
			p := &corev1.Pod{}
			strict(t, name, m, p)
			if p.Annotations["helm.sh/hook"] == "test" {
				d.testPod = p
			} else {
				d.staticPod = p
			}
		case "v1/Service":
			d.service = &corev1.Service{}
			strict(t, name, m, d.service)
		case "v1/ServiceAccount":
			sa := &corev1.ServiceAccount{}
			strict(t, name, m, sa)
			if meta.Metadata.Annotations["helm.sh/hook"] == "test" {
				d.testServiceAccount = sa
			} else {
				d.serviceAccount = sa
			}
		case "rbac.authorization.k8s.io/v1/Role":
			d.testRole = &rbacv1.Role{}
			strict(t, name, m, d.testRole)
		case "rbac.authorization.k8s.io/v1/RoleBinding":
			d.testRoleBinding = &rbacv1.RoleBinding{}
			strict(t, name, m, d.testRoleBinding)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			// Not a k8s.io/api type: check the fields Prometheus Operator needs.
			if err := yaml.Unmarshal([]byte(m), &d.serviceMonitor); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s renders an unexpected %s", name, gvk)
		}
	}
	return d
}

func (d decoded) pluginPod(t *testing.T) corev1.PodSpec {
	t.Helper()
	switch {
	case d.daemonSet != nil:
		return d.daemonSet.Spec.Template.Spec
	case d.staticPod != nil:
		return d.staticPod.Spec
	}
	t.Fatal("neither a DaemonSet nor a static pod was rendered")
	return corev1.PodSpec{}
}

func TestHelmLintPassesForEveryMode(t *testing.T) {
	for _, c := range combos() {
		t.Run(c[0]+"/"+c[1], func(t *testing.T) {
			l := lint.RunAll(Trousseau, valuesFor(c[0], c[1]), ReleaseNamespace)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
	for _, mode := range []string{"dev", "persistent"} {
		l := lint.RunAll(VaultDev, map[string]any{"mode": mode}, "vault")
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint vault-dev (%s): %s", mode, m)
			}
		}
	}
}

func TestEveryRenderedObjectDecodesStrictly(t *testing.T) {
	for _, c := range combos() {
		t.Run(c[0]+"/"+c[1], func(t *testing.T) {
			v := valuesFor(c[0], c[1])
			v["metrics"] = map[string]any{"serviceMonitor": map[string]any{"enabled": true}}
			d := renderDecoded(t, v)
			if d.configMap == nil || d.notes == "" {
				t.Fatal("the ConfigMap and NOTES.txt must render in every mode")
			}
			if c[1] == "daemonSet" {
				if d.daemonSet == nil || d.service == nil || d.serviceAccount == nil || d.testPod == nil || d.serviceMonitor == nil || d.staticPod != nil {
					t.Fatalf("daemonSet mode renders the wrong set of objects: %+v", d)
				}
				ep := d.serviceMonitor["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
				if ep["port"] != "ops" || ep["path"] != "/metrics" {
					t.Fatalf("ServiceMonitor endpoint %v, want port ops path /metrics", ep)
				}
			} else if d.staticPod == nil || d.daemonSet != nil || d.service != nil || d.serviceAccount != nil {
				t.Fatalf("staticPod mode renders the wrong set of objects: %+v", d)
			}
		})
	}
	for _, mode := range []string{"dev", "persistent"} {
		out, err := RenderRelease(VaultDev, "vault", "vault", map[string]any{"mode": mode})
		if err != nil {
			t.Fatal(err)
		}
		for name, doc := range splitDocs(out) {
			m := doc
			var meta struct{ Kind string }
			_ = yaml.Unmarshal([]byte(m), &meta)
			var into any
			switch meta.Kind {
			case "ServiceAccount":
				into = &corev1.ServiceAccount{}
			case "ClusterRoleBinding":
				into = &rbacv1.ClusterRoleBinding{}
			case "Deployment":
				into = &appsv1.Deployment{}
			case "StatefulSet":
				into = &appsv1.StatefulSet{}
			case "Service":
				into = &corev1.Service{}
			case "ConfigMap":
				into = &corev1.ConfigMap{}
			case "":
				continue // NOTES.txt
			default:
				t.Fatalf("vault-dev %s renders unexpected %s", name, meta.Kind)
			}
			strict(t, name, m, into)
		}
	}
}

func TestPluginConfigDecodesIntoPluginTypesForEveryAuthMode(t *testing.T) {
	for _, c := range combos() {
		raw, err := PluginConfig(valuesFor(c[0], c[1]))
		if err != nil {
			t.Fatal(err)
		}
		var cfg config.Config
		if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
			t.Fatalf("%v: trousseau.yaml does not decode strictly into config.Config: %v\n%s", c, err, raw)
		}
		a := cfg.Provider.Vault.Auth
		set := map[string]bool{"kubernetes": a.Kubernetes != nil, "approle": a.AppRole != nil, "token": a.Token != nil, "cert": a.Cert != nil}
		for m, ok := range set {
			if ok != (m == c[0]) {
				t.Fatalf("%v: auth stanza %s set=%v; exactly the chosen method must be set\n%s", c, m, ok, raw)
			}
		}
		if a.Method != c[0] || cfg.Socket.Path != controlplane.SocketPath() {
			t.Fatalf("%v: method %q socket %q", c, a.Method, cfg.Socket.Path)
		}
	}
}

// TestPluginConfigTakesTheLocalRuntimeValues uses exactly the keys the local
// runtime sets, so a chart change that breaks the local e2e fails here first.
func TestPluginConfigTakesTheLocalRuntimeValues(t *testing.T) {
	raw, err := PluginConfig(map[string]any{
		"socket": map[string]any{"path": "/tmp/trousseau-1234/kms.sock"},
		"ops":    map[string]any{"address": "127.0.0.1:41234"},
		"vault": map[string]any{"address": "https://127.0.0.1:8200", "transitMount": "transit2", "keyName": "k8s",
			"tls": map[string]any{"caFile": "/work/.trousseau/pki/ca.pem"}},
		"auth": map[string]any{"method": "approle", "approle": map[string]any{
			"roleIDFile": "/work/.trousseau/vault/role-id", "secretIDFile": "/work/.trousseau/vault/secret-id"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var cfg config.Config
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	v := cfg.Provider.Vault
	got := []string{cfg.Socket.Path, cfg.Ops.Address, v.Address, v.TransitMount, v.KeyName, v.TLS.CAFile, v.Auth.AppRole.RoleIDFile, v.Auth.AppRole.SecretIDFile}
	want := []string{"/tmp/trousseau-1234/kms.sock", "127.0.0.1:41234", "https://127.0.0.1:8200", "transit2", "k8s", "/work/.trousseau/pki/ca.pem", "/work/.trousseau/vault/role-id", "/work/.trousseau/vault/secret-id"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plugin config\n got %q\nwant %q", got, want)
	}
}

func TestSchemaRejectsInvalidValuesReadably(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"unknown auth method", map[string]any{"auth": map[string]any{"method": "ldap"}}, "method"},
		{"relative socket path", map[string]any{"socket": map[string]any{"path": "kms.sock"}}, "path"},
		{"typo in a key", map[string]any{"vault": map[string]any{"adress": "https://v:8200"}}, "adress"},
		{"ops address without port", map[string]any{"ops": map[string]any{"address": "localhost"}}, "address"},
		{"bad duration", map[string]any{"vault": map[string]any{"requestTimeout": "2 seconds"}}, "requestTimeout"},
		{"unknown deployment mode", map[string]any{"deployment": map[string]any{"mode": "deployment"}}, "mode"},
		{"token file not a path", map[string]any{"auth": map[string]any{"token": map[string]any{"tokenFile": 42}}}, "tokenFile"},
	}
	for _, c := range cases {
		_, err := Render(Trousseau, c.values)
		if err == nil {
			t.Errorf("%s: rendered without error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error should name the schema and %q:\n%v", c.name, c.want, err)
		}
	}
}

func TestStaticPodRejectsKubernetesAuth(t *testing.T) {
	_, err := Render(Trousseau, valuesFor("kubernetes", "staticPod"))
	if err == nil || !strings.Contains(err.Error(), "auth.method=kubernetes cannot be used with deployment.mode=staticPod") {
		t.Fatalf("want a clear kubernetes-auth/static-pod error, got %v", err)
	}
	_, err = Render(Trousseau, map[string]any{"auth": map[string]any{"method": "cert"}, "vault": map[string]any{"address": vaultAddress}})
	if err == nil || !strings.Contains(err.Error(), "vault.tls.certFile") {
		t.Fatalf("cert auth without a client certificate: want an error naming vault.tls.certFile, got %v", err)
	}
	_, err = Render(Trousseau, map[string]any{"auth": map[string]any{"method": "cert"}, "vault": map[string]any{
		"address": "http://vault.example:8200", "tls": map[string]any{"certFile": "/etc/t/c.pem", "keyFile": "/etc/t/k.pem"}}})
	if err == nil || !strings.Contains(err.Error(), "https:// vault.address") {
		t.Fatalf("cert auth over http: want an error naming https:// vault.address, got %v", err)
	}
}

func TestNoCredentialComesFromASecret(t *testing.T) {
	for _, c := range combos() {
		spec := renderDecoded(t, valuesFor(c[0], c[1])).pluginPod(t)
		for _, v := range spec.Volumes {
			if v.Secret != nil {
				t.Errorf("%v: volume %s is a Secret: a cold start would deadlock on it", c, v.Name)
			}
			if v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.Secret != nil {
						t.Errorf("%v: projected volume %s carries a Secret", c, v.Name)
					}
				}
			}
		}
		for _, ctr := range spec.Containers {
			for _, e := range ctr.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					t.Errorf("%v: env %s comes from a Secret", c, e.Name)
				}
			}
			if len(ctr.EnvFrom) > 0 {
				t.Errorf("%v: envFrom is set", c)
			}
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%v: the API token must not be automounted", c)
		}
	}
}

func TestDefaultModeUsesProjectedTokenWithAudience(t *testing.T) {
	spec := renderDecoded(t, minimal()).pluginPod(t)
	for _, v := range spec.Volumes {
		if v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ServiceAccountToken != nil {
			if a := v.Projected.Sources[0].ServiceAccountToken.Audience; a != "vault" {
				t.Fatalf("projected token audience %q, want vault", a)
			}
			return
		}
	}
	t.Fatal("kubernetes auth (the default) has no projected ServiceAccount token volume")
}

func TestPodInvariants(t *testing.T) {
	for _, c := range combos() {
		d := renderDecoded(t, valuesFor(c[0], c[1]))
		spec := d.pluginPod(t)
		if spec.PriorityClassName != "system-node-critical" {
			t.Errorf("%v: priorityClassName %q", c, spec.PriorityClassName)
		}
		ctr := spec.Containers[0]
		if ctr.LivenessProbe.HTTPGet.Path != "/livez" || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%v: probes %s / %s, want /livez and /readyz", c, ctr.LivenessProbe.HTTPGet.Path, ctr.ReadinessProbe.HTTPGet.Path)
		}
		if ctr.LivenessProbe.HTTPGet.Port.StrVal != "ops" || ctr.Ports[0].Name != "ops" || ctr.Ports[0].ContainerPort != 8787 {
			t.Errorf("%v: probes must use the ops port 8787", c)
		}
		sc := ctr.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%v: container securityContext is not hardened: %+v", c, sc)
		}
		if spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%v: no RuntimeDefault seccomp profile", c)
		}
		if ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
			t.Errorf("%v: memory request and limit must be set", c)
		}
		if c[1] == "daemonSet" {
			tolerated := false
			for _, tol := range spec.Tolerations {
				if tol.Key == "node-role.kubernetes.io/control-plane" && (tol.Effect == corev1.TaintEffectNoSchedule || tol.Effect == "") &&
					(tol.Operator == corev1.TolerationOpExists || tol.Operator == "") {
					tolerated = true
				}
			}
			if !tolerated {
				t.Errorf("%v: tolerations %v do not cover node-role.kubernetes.io/control-plane:NoSchedule", c, spec.Tolerations)
			}
			if _, ok := spec.NodeSelector["node-role.kubernetes.io/control-plane"]; !ok {
				t.Errorf("%v: nodeSelector %v does not pin control-plane nodes", c, spec.NodeSelector)
			}
			for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"} {
				if d.daemonSet.Labels[k] == "" || d.daemonSet.Spec.Template.Labels[k] == "" {
					t.Errorf("%v: label %s missing", c, k)
				}
			}
			if p := ctr.ReadinessProbe.HTTPGet; p.Host != "" {
				t.Errorf("%v: a DaemonSet pod has its own network namespace: its probes must target the pod IP, not host %q", c, p.Host)
			}
		} else {
			if !spec.HostNetwork {
				t.Errorf("%v: a static pod runs before any CNI, so it needs hostNetwork", c)
			}
			if spec.DNSPolicy != corev1.DNSDefault {
				t.Errorf("%v: a static pod starts before CoreDNS, so it must use the host resolver (dnsPolicy Default), not %q", c, spec.DNSPolicy)
			}
			if ctr.LivenessProbe.HTTPGet.Host != "127.0.0.1" || ctr.ReadinessProbe.HTTPGet.Host != "127.0.0.1" {
				t.Errorf("%v: the static pod binds ops to loopback, so its probes need host 127.0.0.1", c)
			}
		}
	}
}

// pathsNamedByConfig is every host path the plugin needs: its config file,
// its socket and every credential or TLS file its config names.
func pathsNamedByConfig(t *testing.T, raw []byte, spec corev1.PodSpec) []string {
	t.Helper()
	var cfg config.Config
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	v := cfg.Provider.Vault
	paths := []string{cfg.Socket.Path, spec.Containers[0].Args[len(spec.Containers[0].Args)-1], v.TLS.CAFile, v.TLS.CertFile, v.TLS.KeyFile}
	if a := v.Auth.AppRole; a != nil {
		paths = append(paths, a.RoleIDFile, a.SecretIDFile)
	}
	if a := v.Auth.Token; a != nil {
		paths = append(paths, a.TokenFile)
	}
	if a := v.Auth.Kubernetes; a != nil {
		paths = append(paths, a.TokenFile)
	}
	var out []string
	for _, p := range paths {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// TestFieldCase18EveryPathThePluginNamesIsMounted covers the static-pod
// manifest (and the DaemonSet): every path in the plugin's config and args
// lies inside a volumeMount whose volume exists, and in a static pod every
// such volume is a hostPath (static pods cannot mount anything else).
func TestFieldCase18EveryPathThePluginNamesIsMounted(t *testing.T) {
	for _, c := range combos() {
		v := valuesFor(c[0], c[1])
		v["vault"] = map[string]any{"address": "https://vault.example:8200", "tls": map[string]any{
			"caFile": "/etc/pki/vault/ca.pem", "certFile": "/etc/trousseau/tls/client.pem", "keyFile": "/etc/trousseau/tls/client-key.pem"}}
		d := renderDecoded(t, v)
		spec := d.pluginPod(t)
		volumes := map[string]corev1.Volume{}
		for _, vol := range spec.Volumes {
			volumes[vol.Name] = vol
		}
		raw, err := PluginConfig(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pathsNamedByConfig(t, raw, spec) {
			var mount *corev1.VolumeMount
			for i, m := range spec.Containers[0].VolumeMounts {
				if path.Dir(p) == m.MountPath {
					mount = &spec.Containers[0].VolumeMounts[i]
				}
			}
			if mount == nil {
				t.Errorf("%v: %s is named by the plugin but its directory is not mounted", c, p)
				continue
			}
			vol, ok := volumes[mount.Name]
			if !ok {
				t.Errorf("%v: mount %s has no volume", c, mount.Name)
				continue
			}
			if c[1] == "staticPod" && (vol.HostPath == nil || vol.HostPath.Path != mount.MountPath) {
				t.Errorf("%v: static pod volume %s for %s must be a hostPath of the same directory", c, vol.Name, p)
			}
		}
	}
}

func TestChartDefaultsMatchControlPlane(t *testing.T) {
	c, err := Load(Trousseau)
	if err != nil {
		t.Fatal(err)
	}
	sock := c.Values["socket"].(map[string]any)["path"]
	if sock != controlplane.SocketPath() {
		t.Fatalf("chart default socket.path %v != controlplane.SocketPath() %s", sock, controlplane.SocketPath())
	}
	dir := c.Values["apiserver"].(map[string]any)["encryptionConfigDir"]
	if dir != controlplane.EncryptionConfigDir {
		t.Fatalf("chart default apiserver.encryptionConfigDir %v != controlplane.EncryptionConfigDir %s", dir, controlplane.EncryptionConfigDir)
	}
}

var (
	notesConfigRE = regexp.MustCompile(`(?s)----- BEGIN ([a-z-]+) EncryptionConfiguration -----\n(.*?)----- END [a-z-]+ EncryptionConfiguration -----`)
	notesFlagRE   = regexp.MustCompile(`--(encryption-provider-config[a-z-]*)=(\S+)`)
)

// TestFieldCase18NotesMatchControlPlaneFlagsAndVolumes: the chart cannot call Go, so NOTES.txt spells
// the EncryptionConfiguration and flags out; this test keeps them equal to
// controlplane's for any socket path and config directory.
func TestFieldCase18NotesMatchControlPlaneFlagsAndVolumes(t *testing.T) {
	for _, sock := range []string{controlplane.SocketPath(), "/run/kms/plugin.sock"} {
		for _, dir := range []string{controlplane.EncryptionConfigDir, "/etc/kubernetes/enc"} {
			d := renderDecoded(t, map[string]any{"socket": map[string]any{"path": sock}, "apiserver": map[string]any{"encryptionConfigDir": dir},
				"vault": map[string]any{"address": vaultAddress}})
			blocks := notesConfigRE.FindAllStringSubmatch(d.notes, -1)
			if len(blocks) != 2 || blocks[0][1] != "identity-first" || blocks[1][1] != "kms-first" {
				t.Fatalf("NOTES.txt must show the identity-first, then the kms-first EncryptionConfiguration:\n%s", d.notes)
			}
			for i, mode := range []controlplane.Mode{controlplane.IdentityOnly, controlplane.KMSFirst} {
				var got, want apiserverv1.EncryptionConfiguration
				if err := yaml.UnmarshalStrict([]byte(blocks[i][2]), &got); err != nil {
					t.Fatalf("NOTES %s EncryptionConfiguration: %v", blocks[i][1], err)
				}
				raw, err := controlplane.EncryptionConfig(mode, sock)
				if err != nil {
					t.Fatal(err)
				}
				if err := yaml.UnmarshalStrict(raw, &want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("NOTES %s EncryptionConfiguration differs from controlplane's %s:\n%s\nwant\n%s", blocks[i][1], mode, blocks[i][2], raw)
				}
			}
			flags := map[string]string{}
			for _, f := range notesFlagRE.FindAllStringSubmatch(d.notes, -1) {
				flags[f[1]] = f[2]
			}
			if wantFlags := controlplane.APIServerFlags(dir); !reflect.DeepEqual(flags, wantFlags) {
				t.Fatalf("NOTES flags %v, want %v", flags, wantFlags)
			}
			for _, mounted := range []string{path.Dir(sock), dir} {
				if !strings.Contains(d.notes, "hostPath: {path: "+mounted+", type: DirectoryOrCreate}") {
					t.Fatalf("NOTES does not tell the operator to mount %s into the apiserver:\n%s", mounted, d.notes)
				}
			}
		}
	}
}

func TestVaultDevNotesWarnThatDevModeIsInMemory(t *testing.T) {
	out, err := RenderRelease(VaultDev, "vault", "vault", nil)
	if err != nil {
		t.Fatal(err)
	}
	notes := out["vault-dev/templates/NOTES.txt"]
	if !strings.Contains(notes, "KEEPS EVERY KEY IN MEMORY") || !strings.Contains(notes, "mode=persistent") {
		t.Fatalf("dev-mode NOTES must warn loudly and offer the persistent mode:\n%s", notes)
	}
	for name, m := range out {
		if strings.Contains(m, "kind: Secret\n") {
			t.Fatalf("%s renders a Secret; the dev root token Secret is created outside Helm's release record", name)
		}
	}
}

func TestRenderIsStableAcrossCalls(t *testing.T) {
	a, err := Render(Trousseau, minimal())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Render(Trousseau, minimal())
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if a[k] != b[k] {
			t.Fatal(fmt.Sprintf("%s differs between two renders", k))
		}
	}
}

// splitDocs splits multi-document manifests, keyed "template#index".
func splitDocs(out map[string]string) map[string]string {
	docs := map[string]string{}
	for name, m := range out {
		for i, d := range strings.Split(m, "\n---\n") {
			if strings.TrimSpace(d) != "" {
				docs[fmt.Sprintf("%s#%d", name, i)] = d
			}
		}
	}
	return docs
}

// TestPluginLoaderAcceptsChartConfigForEveryMode runs the chart-rendered
// trousseau.yaml through the plugin's own loader and validation, exactly as
// `trousseau serve --config` would.
func TestPluginLoaderAcceptsChartConfigForEveryMode(t *testing.T) {
	for _, c := range combos() {
		raw, err := PluginConfig(valuesFor(c[0], c[1]))
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "trousseau.yaml")
		if err := os.WriteFile(f, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(f, nil, nil)
		if err != nil {
			t.Fatalf("%v: the plugin cannot load the chart's config: %v\n%s", c, err, raw)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%v: the plugin rejects the chart's config: %v\n%s", c, err, raw)
		}
		if w := cfg.Warnings(); len(w) > 0 {
			t.Errorf("%v: the chart's default config draws warnings: %v", c, w)
		}
	}
}

// TestOpsBindsLoopbackOnTheHostNetwork: a static pod shares the host's
// network, so by default its /metrics and /readyz listen on loopback only;
// a DaemonSet pod listens on its own pod IP, which the Service and the
// kubelet probes need. An explicit ops.address wins in both modes.
func TestOpsBindsLoopbackOnTheHostNetwork(t *testing.T) {
	cases := []struct {
		mode, address, wantConfig, wantProbeHost string
	}{
		{"daemonSet", "", "0.0.0.0:8787", ""},
		{"staticPod", "", "127.0.0.1:8787", "127.0.0.1"},
		{"staticPod", "10.0.0.5:9000", "10.0.0.5:9000", "10.0.0.5"},
		{"staticPod", "0.0.0.0:8787", "0.0.0.0:8787", "127.0.0.1"},
		{"staticPod", "[fd00::5]:8787", "[fd00::5]:8787", "fd00::5"},
	}
	for _, c := range cases {
		v := valuesFor("approle", c.mode)
		if c.address != "" {
			v["ops"] = map[string]any{"address": c.address}
		}
		raw, err := PluginConfig(v)
		if err != nil {
			t.Fatal(err)
		}
		var cfg config.Config
		if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		ctr := renderDecoded(t, v).pluginPod(t).Containers[0]
		if cfg.Ops.Address != c.wantConfig || ctr.ReadinessProbe.HTTPGet.Host != c.wantProbeHost || ctr.LivenessProbe.HTTPGet.Host != c.wantProbeHost {
			t.Errorf("%s ops.address %q: plugin binds %q, probes host %q; want %q and %q",
				c.mode, c.address, cfg.Ops.Address, ctr.ReadinessProbe.HTTPGet.Host, c.wantConfig, c.wantProbeHost)
		}
		if want := c.wantConfig[strings.LastIndex(c.wantConfig, ":")+1:]; fmt.Sprint(ctr.Ports[0].ContainerPort) != want {
			t.Errorf("%s ops.address %q: container port %d, want %s", c.mode, c.address, ctr.Ports[0].ContainerPort, want)
		}
	}
}

// TestVaultAddressIsRequired: no production cluster silently talks to a dev
// Vault over http; the message names the value and shows an https example.
func TestVaultAddressIsRequired(t *testing.T) {
	for _, v := range []map[string]any{nil, {"vault": map[string]any{"address": ""}}} {
		_, err := Render(Trousseau, v)
		if err == nil || !strings.Contains(err.Error(), "vault.address is required") || !strings.Contains(err.Error(), "https://vault.example.com:8200") {
			t.Fatalf("values %v: want an error naming vault.address with an https example, got %v", v, err)
		}
	}
	c, err := Load(Trousseau)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Values["vault"].(map[string]any)["address"]; a != "" {
		t.Fatalf("values.yaml defaults vault.address to %q; it must have no default", a)
	}
	if _, err := Render(Trousseau, map[string]any{"vault": map[string]any{"address": "vault:8200"}}); err == nil || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("an address without http(s):// must fail the schema, got %v", err)
	}
}

// TestHelmTestWaitsForEveryPluginPod: `helm test` must fail while any plugin
// pod is unready, so it asks the API for the DaemonSet's rollout (every pod
// Ready) instead of reading /readyz through a Service (any one pod), and it
// may read nothing but that DaemonSet.
func TestHelmTestWaitsForEveryPluginPod(t *testing.T) {
	d := renderDecoded(t, minimal())
	if d.testPod == nil || d.testServiceAccount == nil || d.testRole == nil || d.testRoleBinding == nil {
		t.Fatalf("daemonSet mode must render the test pod with its ServiceAccount, Role and RoleBinding: %+v", d)
	}
	for name, ann := range map[string]map[string]string{"ServiceAccount": d.testServiceAccount.Annotations, "Role": d.testRole.Annotations, "RoleBinding": d.testRoleBinding.Annotations, "Pod": d.testPod.Annotations} {
		if ann["helm.sh/hook"] != "test" {
			t.Errorf("the test %s is not a test hook: %v", name, ann)
		}
		if name != "Pod" && ann["helm.sh/hook-weight"] != "-1" {
			t.Errorf("the test %s must be created before the test pod (hook-weight -1): %v", name, ann)
		}
	}
	script := strings.Join(d.testPod.Spec.Containers[0].Command, " ")
	for _, want := range []string{"rollout status daemonset/" + d.daemonSet.Name + " ", "-n " + ReleaseNamespace, "desiredNumberScheduled", "0/0) ", "exit 1"} {
		if !strings.Contains(script, want) {
			t.Errorf("the test script lacks %q:\n%s", want, script)
		}
	}
	if d.testPod.Spec.ServiceAccountName != d.testServiceAccount.Name {
		t.Errorf("test pod runs as %q, not the test ServiceAccount %q", d.testPod.Spec.ServiceAccountName, d.testServiceAccount.Name)
	}
	rb := d.testRoleBinding
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != d.testRole.Name || len(rb.Subjects) != 1 || rb.Subjects[0].Name != d.testServiceAccount.Name || rb.Subjects[0].Namespace != ReleaseNamespace {
		t.Errorf("the RoleBinding does not bind the test Role to the test ServiceAccount: %+v", rb)
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, ResourceNames: []string{d.daemonSet.Name}, Verbs: []string{"get", "list", "watch"}}}
	if !reflect.DeepEqual(d.testRole.Rules, want) {
		t.Errorf("the test Role grants %+v; want read access to the plugin DaemonSet only", d.testRole.Rules)
	}
	if ro := d.testPod.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
		t.Error("the test container must keep a read-only root filesystem")
	}
	if sp := renderDecoded(t, valuesFor("approle", "staticPod")); sp.testPod != nil || sp.testRole != nil {
		t.Error("staticPod mode has no release to test, yet renders test hooks")
	}
}

// TestStaticPodManifestIsCleanForTheKubelet: the static-pod manifest is what
// an operator copies to /etc/kubernetes/manifests verbatim, so it starts with
// a header saying what it is and where it goes, and claims no Helm ownership.
func TestStaticPodManifestIsCleanForTheKubelet(t *testing.T) {
	d := renderDecoded(t, valuesFor("approle", "staticPod"))
	m := d.raw[Trousseau+"/templates/static-pod.yaml"]
	if !strings.HasPrefix(m, "# Trousseau KMS plugin, as a static pod") || !strings.Contains(m, "/etc/kubernetes/manifests/trousseau.yaml") {
		t.Errorf("the static-pod manifest must open with its header comment:\n%s", m)
	}
	if strings.Contains(m, "helm template") {
		t.Errorf("the static-pod manifest is already rendered; it must not tell the reader to render it:\n%s", m)
	}
	if _, ok := d.staticPod.Labels["app.kubernetes.io/managed-by"]; ok {
		t.Errorf("the kubelet, not Helm, manages a static pod: labels %v", d.staticPod.Labels)
	}
	if ds := renderDecoded(t, minimal()).daemonSet; ds.Labels["app.kubernetes.io/managed-by"] != "Helm" {
		t.Errorf("the DaemonSet is a Helm release object and keeps managed-by Helm: %v", ds.Labels)
	}
}

// notesOrder is the safe rollout, in order: identity first, plugin ready,
// KMS first, the reload observed, the migration, the etcd check.
var notesOrder = []string{
	"BEGIN identity-first EncryptionConfiguration",
	"--encryption-provider-config-automatic-reload=true",
	"/readyz",
	"BEGIN kms-first EncryptionConfiguration",
	"apiserver_encryption_config_controller_automatic_reloads_total",
	"kubectl replace -f -",
	"get --prefix /registry/secrets/ --keys-only",
	"k8s:enc:kms:v2:trousseau:",
}

// TestNotesFollowTheSafeRolloutOrder: writing the KMS-first config before the
// plugin is ready fails every Secret write, so NOTES must walk the order.
func TestNotesFollowTheSafeRolloutOrder(t *testing.T) {
	for _, c := range combos() {
		d := renderDecoded(t, valuesFor(c[0], c[1]))
		if err := inOrder(d.notes, notesOrder); err != nil {
			t.Errorf("%v: %v\n%s", c, err, d.notes)
		}
		static := c[1] == "staticPod"
		for _, s := range []struct {
			text string
			want bool
		}{
			{"curl -fsS http://127.0.0.1:8787/readyz", static},
			{"host's DNS resolver", static},
			{"rollout status daemonset/" + ReleaseName, !static},
			{"helm test " + ReleaseName, !static},
			{"/etc/trousseau/config/trousseau.yaml", static},
		} {
			if strings.Contains(d.notes, s.text) != s.want {
				t.Errorf("%v: NOTES contains %q = %v, want %v", c, s.text, !s.want, s.want)
			}
		}
	}
	d := renderDecoded(t, map[string]any{"vault": map[string]any{"address": "http://vault.vault.svc:8200"}})
	if !strings.Contains(d.notes, "WARNING: vault.address is plain http://") || !strings.Contains(d.notes, "in-cluster Service name") {
		t.Errorf("NOTES must warn about plain http and the in-cluster Service bootstrap dependency:\n%s", d.notes)
	}
}

// inOrder reports the first of want that is missing or out of order in text.
func inOrder(text string, want []string) error {
	at := 0
	for _, w := range want {
		i := strings.Index(text[at:], w)
		if i < 0 {
			return fmt.Errorf("%q missing, or before the step it must follow", w)
		}
		at += i + len(w)
	}
	return nil
}
