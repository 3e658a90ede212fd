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
