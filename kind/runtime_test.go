package kind

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/charts"
)

// TestMissingDockerFailsFastAndPointsAtLocal: TROUSSEAU_RUNTIME=kind on a
// host without an engine (no socket, or a socket nobody answers on) fails
// in under a second, names what is missing and the runtime that works.
func TestMissingDockerFailsFastAndPointsAtLocal(t *testing.T) {
	dir := t.TempDir()
	hung := filepath.Join(dir, "hung.sock")
	ln, err := net.Listen("unix", hung)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and never answer
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	missing := "unix://" + filepath.Join(dir, "missing.sock")
	// The kind runtime's own constructor: a missing and a hung engine.
	for _, host := range []string{missing, "unix://" + hung} {
		t.Setenv("DOCKER_HOST", host)
		start := time.Now()
		_, err := New(runtime.Options{RepoRoot: dir})
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s: the kind runtime started without a Docker engine", host)
		}
		if took >= time.Second {
			t.Errorf("%s: failing took %s, want < 1s", host, took)
		}
		for _, want := range []string{"needs a running Docker engine", "TROUSSEAU_RUNTIME=local", "needs no Docker"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error should say %q:\n%v", host, want, err)
			}
		}
	}
	// Through the selection mage uses (appliance/runtime checks first).
	t.Setenv("DOCKER_HOST", missing)
	t.Setenv(runtime.EnvRuntime, "kind")
	start := time.Now()
	_, err = runtime.Select(runtime.Options{RepoRoot: dir})
	if took := time.Since(start); err == nil || took >= time.Second {
		t.Fatalf("Select(kind) without Docker: err %v after %s, want an error in < 1s", err, took)
	}
	for _, want := range []string{"Docker engine", "local runtime"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Select error should say %q:\n%v", want, err)
		}
	}
}

// TestApplianceValuesPassTheCharts renders the exact values the kind flow
// installs with, through the charts' schemas, and checks what the flow
// relies on.
func TestApplianceValuesPassTheCharts(t *testing.T) {
	ds := renderDaemonSet(t, pluginValues("sha256:0123", 1001, 127))
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Image != pluginImageRef() || c.ImagePullPolicy != "Never" || c.Ports[0].ContainerPort != opsPort {
		t.Fatalf("DaemonSet image %s (%s), ops port %d: want %s, Never, %d", c.Image, c.ImagePullPolicy, c.Ports[0].ContainerPort, pluginImageRef(), opsPort)
	}
	if sc := ds.Spec.Template.Spec.SecurityContext; *sc.RunAsUser != 1001 || !*sc.RunAsNonRoot {
		t.Fatalf("the kind plugin must run as the host user, non-root: %+v", sc)
	}
	if ds.Name != charts.ReleaseName || ds.Spec.Template.Annotations["trousseau.io/image-id"] != "sha256:0123" {
		t.Fatalf("DaemonSet %s annotations %v", ds.Name, ds.Spec.Template.Annotations)
	}
	vault, err := charts.RenderRelease(charts.VaultDev, VaultRelease, VaultNamespace, map[string]any{
		"mode": "dev", "dev": map[string]any{"rootTokenSecret": vaultRootTokenSecret},
	})
	if err != nil {
		t.Fatalf("kind vault-dev values: %v", err)
	}
	svc := vault["vault-dev/templates/service.yaml"]
	if !strings.Contains(svc, "name: "+VaultRelease+"\n") || !strings.Contains(vaultInClusterAddr, VaultRelease+"."+VaultNamespace+".svc:8200") {
		t.Fatalf("the plugin's Vault address %s does not match the vault-dev Service:\n%s", vaultInClusterAddr, svc)
	}
}

// renderDaemonSet renders charts/trousseau with values through its schema
// and returns the plugin DaemonSet.
func renderDaemonSet(t *testing.T, values map[string]any) appsv1.DaemonSet {
	t.Helper()
	out, err := charts.Render(charts.Trousseau, values)
	if err != nil {
		t.Fatalf("render charts/trousseau with %v: %v", values, err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict([]byte(out["trousseau/templates/daemonset.yaml"]), &ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestDecodeEtcdctlJSON(t *testing.T) {
	out := []byte(`{"header":{"revision":7},"kvs":[{"key":"L3JlZ2lzdHJ5L3NlY3JldHMvZGVmYXVsdC9h","value":"azhzOmVuYzprbXM6djI6dHJvdXNzZWF1OgABAg==","create_revision":5}],"count":1}`)
	kvs, err := decodeEtcdctlJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 1 || kvs[0].Key != "/registry/secrets/default/a" || !strings.HasPrefix(string(kvs[0].Value), etcdproof.Prefix) {
		t.Fatalf("decoded %+v", kvs)
	}
	if _, err := decodeEtcdctlJSON([]byte("Error: context deadline exceeded")); err == nil {
		t.Fatal("non-JSON etcdctl output must be an error")
	}
}

// TestCIMatrixPinsKindDefaultImage: the workflow's 1.37 leg runs exactly the
// image this package pins.
func TestCIMatrixPinsKindDefaultImage(t *testing.T) {
	wf, err := os.ReadFile(filepath.Join("..", ".github", "workflows", "ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Jobs map[string]struct {
			Strategy struct {
				Matrix struct {
					Include []map[string]string `json:"include"`
				} `json:"matrix"`
			} `json:"strategy"`
		} `json:"jobs"`
	}
	if err := yaml.Unmarshal(wf, &doc); err != nil {
		t.Fatalf("ci.yml: %v", err)
	}
	legs := doc.Jobs["e2e-kind"].Strategy.Matrix.Include
	if len(legs) != 3 {
		t.Fatalf("e2e-kind runs %d Kubernetes minors, want 3", len(legs))
	}
	for _, l := range legs {
		if !strings.HasPrefix(l["node-image"], "kindest/node:v"+l["minor"]+".") || !strings.Contains(l["node-image"], "@sha256:") {
			t.Errorf("leg %v: want kindest/node:v%s.x pinned by digest", l, l["minor"])
		}
		if l["minor"] == "1.37" && l["node-image"] != NodeImage {
			t.Errorf("1.37 leg runs %s, kind.NodeImage is %s", l["node-image"], NodeImage)
		}
	}
}
