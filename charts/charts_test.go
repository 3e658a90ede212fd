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

// valuesFor sets what each mode needs; cert auth needs a client certificate.
func valuesFor(auth, deployment string) map[string]any {
	v := map[string]any{
		"auth":       map[string]any{"method": auth},
		"deployment": map[string]any{"mode": deployment},
	}
	if auth == "cert" {
		v["vault"] = map[string]any{"address": "https://vault.example:8200", "tls": map[string]any{
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
	testPod        *corev1.Pod
	service        *corev1.Service
	serviceAccount *corev1.ServiceAccount
	serviceMonitor map[string]any
	notes          string
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
	var d decoded
	for name, m := range out {
		if strings.HasSuffix(name, "NOTES.txt") {
			d.notes = m
			continue
		}
		var meta struct{ APIVersion, Kind string }
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
			d.serviceAccount = &corev1.ServiceAccount{}
			strict(t, name, m, d.serviceAccount)
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
	_, err = Render(Trousseau, map[string]any{"auth": map[string]any{"method": "cert"}})
	if err == nil || !strings.Contains(err.Error(), "vault.tls.certFile") {
		t.Fatalf("cert auth without a client certificate: want an error naming vault.tls.certFile, got %v", err)
	}
	_, err = Render(Trousseau, map[string]any{"auth": map[string]any{"method": "cert"}, "vault": map[string]any{
		"tls": map[string]any{"certFile": "/etc/t/c.pem", "keyFile": "/etc/t/k.pem"}}})
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
	spec := renderDecoded(t, nil).pluginPod(t)
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
			if d.testPod.Annotations["helm.sh/hook"] != "test" || !strings.HasSuffix(d.testPod.Spec.Containers[0].Command[len(d.testPod.Spec.Containers[0].Command)-1], "/readyz") {
				t.Errorf("%v: the helm test hook must check /readyz", c)
			}
		} else if !spec.HostNetwork {
			t.Errorf("%v: a static pod runs before any CNI, so it needs hostNetwork", c)
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
	notesConfigRE = regexp.MustCompile(`(?s)----- BEGIN EncryptionConfiguration -----\n(.*?)----- END EncryptionConfiguration -----`)
	notesFlagRE   = regexp.MustCompile(`--(encryption-provider-config[a-z-]*)=(\S+)`)
)

// TestFieldCase18NotesMatchControlPlaneFlagsAndVolumes: the chart cannot call Go, so NOTES.txt spells
// the EncryptionConfiguration and flags out; this test keeps them equal to
// controlplane's for any socket path and config directory.
func TestFieldCase18NotesMatchControlPlaneFlagsAndVolumes(t *testing.T) {
	for _, sock := range []string{controlplane.SocketPath(), "/run/kms/plugin.sock"} {
		for _, dir := range []string{controlplane.EncryptionConfigDir, "/etc/kubernetes/enc"} {
			d := renderDecoded(t, map[string]any{"socket": map[string]any{"path": sock}, "apiserver": map[string]any{"encryptionConfigDir": dir}})
			m := notesConfigRE.FindStringSubmatch(d.notes)
			if m == nil {
				t.Fatalf("NOTES.txt has no EncryptionConfiguration block:\n%s", d.notes)
			}
			var got, want apiserverv1.EncryptionConfiguration
			if err := yaml.UnmarshalStrict([]byte(m[1]), &got); err != nil {
				t.Fatalf("NOTES EncryptionConfiguration: %v", err)
			}
			raw, err := controlplane.EncryptionConfig(controlplane.KMSFirst, sock)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(raw, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("NOTES EncryptionConfiguration differs from controlplane:\n%s\nwant\n%s", m[1], raw)
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
	a, err := Render(Trousseau, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Render(Trousseau, nil)
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
