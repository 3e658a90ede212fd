package runtime

import (
	"errors"
	"strings"
	"testing"
)

func TestChooseFollowsEnvThenDockerEngine(t *testing.T) {
	up := func() error { return nil }
	down := func() error { return errors.New("dial unix /var/run/docker.sock: connect: no such file or directory") }
	for _, c := range []struct {
		env      string
		ping     func() error
		want     string
		whyParts []string
	}{
		{"", up, "kind", []string{"Docker engine answered", EnvRuntime + "=local"}},
		{"", down, "local", []string{"no Docker engine answered", "no such file", EnvRuntime + "=kind"}},
		{"local", up, "local", []string{EnvRuntime + "=local"}},
		{"kind", down, "kind", []string{EnvRuntime + "=kind"}},
	} {
		name, why := choose(c.env, c.ping)
		if name != c.want {
			t.Errorf("choose(%q) = %s, want %s", c.env, name, c.want)
		}
		for _, p := range c.whyParts {
			if !strings.Contains(why, p) {
				t.Errorf("choose(%q) reason %q does not mention %q", c.env, why, p)
			}
		}
	}
}

func TestSelectRejectsAnUnknownRuntimeByName(t *testing.T) {
	t.Setenv(EnvRuntime, "podman")
	_, err := Select(Options{})
	if err == nil || !strings.Contains(err.Error(), "not available") || !strings.Contains(err.Error(), EnvRuntime) {
		t.Fatalf("Select with %s=podman: %v, want an error naming the variable", EnvRuntime, err)
	}
}

func TestSumMetricAndKeyIDHash(t *testing.T) {
	text := `# TYPE trousseau_rpc_duration_seconds histogram
trousseau_rpc_duration_seconds_count{code="OK",method="Decrypt"} 7
trousseau_rpc_duration_seconds_count{code="Unavailable",method="Decrypt"} 2
trousseau_rpc_duration_seconds_count{code="OK",method="Encrypt"} 5
apiserver_envelope_encryption_key_id_hash_total{apiserver_id_hash="sha256:x",key_id_hash="` + KeyIDHash("k1") + `",provider_name="trousseau",transformation_type="to_storage"} 3
`
	if got := SumMetric(text, "trousseau_rpc_duration_seconds_count", `method="Decrypt"`); got != 9 {
		t.Errorf("Decrypt count = %v, want 9", got)
	}
	if !MetricHasKeyID(text, MetricKeyIDUsed, "k1", `transformation_type="to_storage"`) || MetricHasKeyID(text, MetricKeyIDUsed, "k2") {
		t.Error("MetricHasKeyID does not match sha256(key_id) exactly")
	}
	// sha256("k1"), computed independently.
	if got, want := KeyIDHash("k1"), "sha256:6ab9f1eb8f7d3388f4f9d586f66e99fd54080df2c446f0e58668b09c08a16dd0"; got != want {
		t.Errorf("KeyIDHash(k1) = %s, want %s", got, want)
	}
}

func TestSelectKindWithoutDockerEngineNamesCauseAndFix(t *testing.T) {
	t.Setenv(EnvRuntime, "kind")
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/no-docker.sock")
	_, err := Select(Options{})
	if err == nil {
		t.Fatal("Select chose kind without a Docker engine")
	}
	for _, want := range []string{"no Docker engine answered", "start Docker", "unset " + EnvRuntime} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
