package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/charts"
	"github.com/trousseau-io/trousseau/plugin/config"
)

func TestBundleIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	filesA, err := Write(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(b); err != nil {
		t.Fatal(err)
	}
	sumsA, _ := os.ReadFile(filepath.Join(a, sumsFile))
	sumsB, _ := os.ReadFile(filepath.Join(b, sumsFile))
	if len(sumsA) == 0 || !bytes.Equal(sumsA, sumsB) {
		t.Fatalf("two runs differ:\n%s\n---\n%s", sumsA, sumsB)
	}
	// Writing again over an existing bundle gives the same bytes too.
	if _, err := Write(a); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(a, sumsFile))
	if !bytes.Equal(sumsA, again) {
		t.Fatal("rewriting the bundle in place changed it")
	}
	// Same-second runs would hide a wall-clock mtime, so check the archive
	// headers themselves.
	for _, name := range []string{charts.Trousseau, charts.VaultDev} {
		f, err := os.Open(filepath.Join(a, "charts", name+"-0.1.0.tgz"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if !zr.ModTime.IsZero() {
			t.Fatalf("%s: gzip header carries mtime %v", name, zr.ModTime)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !h.ModTime.Equal(charts.ModTime) {
				t.Fatalf("%s: %s has mtime %v, want the fixed %v", name, h.Name, h.ModTime, charts.ModTime)
			}
		}
	}
	if len(filesA) < 8 {
		t.Fatalf("bundle has only %v", filesA)
	}
}

func TestSHA256SUMSMatchesEveryFile(t *testing.T) {
	dir := t.TempDir()
	files, err := Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := os.ReadFile(filepath.Join(dir, sumsFile))
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	if len(lines) != len(files) {
		t.Fatalf("SHA256SUMS lists %d files, bundle has %d", len(lines), len(files))
	}
	for _, l := range lines {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("malformed line %q", l)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		if hex.EncodeToString(h[:]) != sum {
			t.Fatalf("%s: checksum mismatch", name)
		}
	}
}

func TestBundleContents(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{charts.Trousseau, charts.VaultDev} {
		c, err := loader.LoadFile(filepath.Join(dir, "charts", name+"-0.1.0.tgz"))
		if err != nil {
			t.Fatalf("packaged %s does not load: %v", name, err)
		}
		src, _ := charts.Load(name)
		if len(c.Templates) != len(src.Templates) || c.Schema == nil {
			t.Fatalf("packaged %s lost files: %d templates (want %d), schema %v", name, len(c.Templates), len(src.Templates), c.Schema != nil)
		}
	}
	ec, _ := os.ReadFile(filepath.Join(dir, "kubeadm", "encryption-config.yaml"))
	want, _ := controlplane.EncryptionConfig(controlplane.KMSFirst, controlplane.SocketPath())
	if !bytes.Equal(ec, want) {
		t.Fatalf("bundled EncryptionConfiguration differs from controlplane's")
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "kubeadm", "trousseau-static-pod.yaml"))
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(raw, &pod); err != nil {
		t.Fatalf("static-pod manifest: %v", err)
	}
	if !pod.Spec.HostNetwork || pod.Namespace != "kube-system" {
		t.Fatalf("static pod: hostNetwork %v namespace %q", pod.Spec.HostNetwork, pod.Namespace)
	}
	cfgRaw, _ := os.ReadFile(filepath.Join(dir, "kubeadm", "trousseau.yaml"))
	var cfg config.Config
	if err := yaml.UnmarshalStrict(cfgRaw, &cfg); err != nil || cfg.Provider.Vault.Auth.Method != "approle" {
		t.Fatalf("static-pod plugin config: %v (method %q)", err, cfg.Provider.Vault.Auth.Method)
	}
	if args := pod.Spec.Containers[0].Args; args[len(args)-1] != "/etc/trousseau/config/trousseau.yaml" {
		t.Fatalf("static pod reads %s; NOTES and the bundle put trousseau.yaml in /etc/trousseau/config", args[len(args)-1])
	}
	for _, f := range []string{"flux-helmrelease.yaml", "argocd-application.yaml"} {
		data, _ := os.ReadFile(filepath.Join(dir, "gitops", f))
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj["kind"] == nil {
				t.Fatalf("%s: not a Kubernetes object: %v", f, err)
			}
		}
		if !strings.Contains(string(data), "version: 0.1.0") && !strings.Contains(string(data), "targetRevision: 0.1.0") {
			t.Fatalf("%s does not pin the chart version", f)
		}
	}
}

// readKubeadm writes a bundle and returns its kubeadm/ files by name.
func readKubeadm(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	if _, err := Write(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "kubeadm"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, "kubeadm", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(data)
	}
	return files
}

var readmeFlagRE = regexp.MustCompile("`--(encryption-provider-config[a-z-]*)=([^`]+)`")

// TestKubeadmReadmeWalksTheSafeRolloutWithTheBundledFiles: a bundle user
// gets a README written for the files next to it (not the chart's NOTES,
// which talks about a rendered ConfigMap), in the only safe order.
func TestKubeadmReadmeWalksTheSafeRolloutWithTheBundledFiles(t *testing.T) {
	files := readKubeadm(t)
	readme, ok := files["README.md"]
	if !ok {
		t.Fatalf("kubeadm/ has no README.md: %v", files)
	}
	if _, ok := files["NOTES.txt"]; ok {
		t.Fatal("kubeadm/NOTES.txt is the chart's Helm output; the bundle ships README.md instead")
	}
	if strings.Contains(readme, "rendered ConfigMap") {
		t.Errorf("the README sends a bundle user to a rendered ConfigMap, but trousseau.yaml is in the bundle:\n%s", readme)
	}
	var names []string
	for n := range files {
		if n != "README.md" {
			names = append(names, n)
			if !strings.Contains(readme, "`"+n+"`") {
				t.Errorf("the README never names the bundled %s", n)
			}
		}
	}
	sort.Strings(names)
	if want := []string{"encryption-config-identity-first.yaml", "encryption-config.yaml", "trousseau-static-pod.yaml", "trousseau.yaml"}; !reflect.DeepEqual(names, want) {
		t.Errorf("kubeadm/ holds %v, want %v", names, want)
	}
	order := []string{
		"## 1. Identity first", "Copy `encryption-config-identity-first.yaml`", "--encryption-provider-config-automatic-reload=true",
		"Copy `trousseau-static-pod.yaml`", "/readyz",
		"## 4. Switch to KMS first", "cp encryption-config.yaml ",
		"apiserver_encryption_config_controller_automatic_reloads_total",
		"kubectl replace -f -",
		"get --prefix /registry/secrets/ --keys-only", etcdPrefixForTest,
	}
	at := 0
	for _, w := range order {
		i := strings.Index(readme[at:], w)
		if i < 0 {
			t.Fatalf("README: %q is missing or comes before the step it must follow:\n%s", w, readme)
		}
		at += i + len(w)
	}
	flags := map[string]string{}
	for _, f := range readmeFlagRE.FindAllStringSubmatch(readme, -1) {
		flags[f[1]] = f[2]
	}
	if want := controlplane.APIServerFlags(controlplane.EncryptionConfigDir); !reflect.DeepEqual(flags, want) {
		t.Errorf("README flags %v, want controlplane's %v", flags, want)
	}
	for _, dir := range []string{controlplane.SocketDir, controlplane.EncryptionConfigDir} {
		if !strings.Contains(readme, "hostPath: {path: "+dir+", type: DirectoryOrCreate}") {
			t.Errorf("README does not mount %s into the apiserver", dir)
		}
	}
	var cfg config.Config
	if err := yaml.UnmarshalStrict([]byte(files["trousseau.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readme, "curl -fsS http://"+cfg.Ops.Address+"/readyz") {
		t.Errorf("README's readiness check does not use the plugin's ops address %s", cfg.Ops.Address)
	}
	for _, f := range []string{cfg.Provider.Vault.Auth.AppRole.RoleIDFile, cfg.Provider.Vault.Auth.AppRole.SecretIDFile} {
		if !strings.Contains(readme, "`"+f+"`") {
			t.Errorf("README does not say where the credential %s goes", f)
		}
	}
}

// etcdPrefixForTest is spelled out, so a change of the provider name or the
// prefix is a visible test change.
const etcdPrefixForTest = "k8s:enc:kms:v2:trousseau:"

// TestKubeadmStaticPodAndConfigAreReadyToEdit: the static pod is a finished
// manifest (a header saying where it goes, no Helm ownership), and the plugin
// config loopback-binds ops and carries an https placeholder it says to edit.
func TestKubeadmStaticPodAndConfigAreReadyToEdit(t *testing.T) {
	files := readKubeadm(t)
	pod := files["trousseau-static-pod.yaml"]
	if !strings.HasPrefix(pod, "# Trousseau KMS plugin, as a static pod") || !strings.Contains(pod, "/etc/kubernetes/manifests/trousseau.yaml") {
		t.Errorf("the static pod must open with a header saying what it is and where it goes:\n%.400s", pod)
	}
	if strings.Contains(pod, "helm template") || strings.Contains(pod, "app.kubernetes.io/managed-by") {
		t.Errorf("the bundled static pod is rendered and not Helm-managed:\n%s", pod)
	}
	var p corev1.Pod
	if err := yaml.UnmarshalStrict([]byte(pod), &p); err != nil {
		t.Fatal(err)
	}
	if h := p.Spec.Containers[0].ReadinessProbe.HTTPGet.Host; h != "127.0.0.1" || p.Spec.DNSPolicy != corev1.DNSDefault {
		t.Errorf("static pod: probe host %q, dnsPolicy %q; want 127.0.0.1 and Default", h, p.Spec.DNSPolicy)
	}
	cfgText := files["trousseau.yaml"]
	var cfg config.Config
	if err := yaml.UnmarshalStrict([]byte(cfgText), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Provider.Vault.Address != VaultPlaceholder || !strings.HasPrefix(VaultPlaceholder, "https://") || !strings.Contains(cfgText, "# EDIT provider.vault.address") {
		t.Errorf("trousseau.yaml: Vault %q, want the https placeholder %s with an EDIT comment:\n%s", cfg.Provider.Vault.Address, VaultPlaceholder, cfgText)
	}
	if cfg.Ops.Address != "127.0.0.1:8787" {
		t.Errorf("the host-network plugin binds ops to %s; want loopback", cfg.Ops.Address)
	}
}

// TestGitOpsExamplesPointAtTheOCIRepositoryCorrectly: Flux takes an oci://
// URL; Argo CD takes the bare registry path for a Helm repository declared
// with enableOCI.
func TestGitOpsExamplesPointAtTheOCIRepositoryCorrectly(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir); err != nil {
		t.Fatal(err)
	}
	docs := func(f string) []map[string]any {
		data, err := os.ReadFile(filepath.Join(dir, "gitops", f))
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, d := range strings.Split(string(data), "\n---\n") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(d), &obj); err != nil {
				t.Fatal(err)
			}
			out = append(out, obj)
		}
		return out
	}
	argo := docs("argocd-application.yaml")
	if len(argo) != 2 || argo[0]["kind"] != "Secret" || argo[1]["kind"] != "Application" {
		t.Fatalf("argocd-application.yaml: want the repository Secret, then the Application; got %d docs", len(argo))
	}
	repo := argo[0]["stringData"].(map[string]any)
	src := argo[1]["spec"].(map[string]any)["source"].(map[string]any)
	if src["repoURL"] != ChartRepository || strings.Contains(src["repoURL"].(string), "://") {
		t.Errorf("Argo CD repoURL %v: want %s without oci://", src["repoURL"], ChartRepository)
	}
	if repo["url"] != src["repoURL"] || repo["type"] != "helm" || repo["enableOCI"] != "true" ||
		argo[0]["metadata"].(map[string]any)["labels"].(map[string]any)["argocd.argoproj.io/secret-type"] != "repository" {
		t.Errorf("the Argo CD repository Secret must declare %s as a Helm OCI repository: %v", src["repoURL"], argo[0])
	}
	flux := docs("flux-helmrelease.yaml")
	if u := flux[0]["spec"].(map[string]any)["url"]; u != "oci://"+ChartRepository {
		t.Errorf("Flux HelmRepository url %v, want oci://%s", u, ChartRepository)
	}
}
