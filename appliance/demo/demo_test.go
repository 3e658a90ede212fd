package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	kmsv2api "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"

	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/plugin/ciphertext"
)

// fakeStack answers the few runtime calls the audit and the key waits make;
// any other call panics on the nil embedded interface.
type fakeStack struct {
	runtime.Runtime
	keyID    string
	kvs      []runtime.KV
	statuses int
	onStatus func(n int)
}

func (f *fakeStack) Name() string { return "fake" }
func (f *fakeStack) PluginStatus(context.Context) (runtime.PluginStatus, error) {
	f.statuses++
	if f.onStatus != nil {
		f.onStatus(f.statuses)
	}
	return runtime.PluginStatus{Healthz: "ok", KeyID: f.keyID}, nil
}
func (f *fakeStack) EtcdList(context.Context, string) ([]runtime.KV, error) { return f.kvs, nil }

// staleValue is a trousseau KMS v2 value as the apiserver stores it, under
// a key_id older than the fake plugin reports.
func staleValue(t *testing.T) []byte {
	t.Helper()
	seed, err := ciphertext.Encode("vault", []byte("vault:v1:AAAA"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&kmsv2api.EncryptedObject{
		EncryptedData: []byte("sealed"), KeyID: "transit-aaaa-v1", EncryptedDEKSource: seed,
		EncryptedDEKSourceType: kmsv2api.EncryptedDEKSourceType_HKDF_SHA256_XNONCE_AES_GCM_SEED,
	})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(etcdproof.Prefix), b...)
}

func TestAuditMarksTheStepFailedListsStaleKeysAndCountsEachProblem(t *testing.T) {
	f := &fakeStack{keyID: "transit-aaaa-v2"}
	f.kvs = append(f.kvs, runtime.KV{Key: "/registry/secrets/ns/plain", Value: []byte("k8s\x00plain secret bytes")})
	for i := range 25 {
		f.kvs = append(f.kvs, runtime.KV{Key: fmt.Sprintf("/registry/secrets/ns/old-%02d", i), Value: staleValue(t)})
	}
	var out bytes.Buffer
	reports, err := Audit(context.Background(), f, progress.New(&out, false))
	if err == nil {
		t.Fatal("audit passed with a plaintext and 25 stale objects")
	}
	text := out.String()
	if !strings.Contains(text, "✗ audit etcd") || strings.Contains(text, "✓ audit etcd") {
		t.Errorf("the audit step is not marked failed:\n%s", text)
	}
	for _, want := range []string{"plaintext: /registry/secrets/ns/plain", "older key_id: /registry/secrets/ns/old-19", "… 5 more"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "old-20") {
		t.Errorf("output lists more than %d stale keys:\n%s", listedKeys, text)
	}
	for _, want := range []string{"secrets: 1 plaintext, 25 on older key_ids", "go tool mage migrate", "transit-aaaa-v2", "switch it to KMS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), " or ") {
		t.Errorf("error guesses instead of saying what it found: %v", err)
	}
	if len(reports) != 1 || reports[0].Stale() != 25 {
		t.Errorf("reports %+v", reports)
	}
}

func TestAuditVerdictOnlyStaleNeedsNoKMSSwitch(t *testing.T) {
	err := auditVerdict([]etcdproof.Report{{Resource: "secrets", Total: 3, Current: 1, CurrentKeyID: "k-v3",
		Older: map[string]int{"k-v2": 2}, OlderKeys: []string{"a", "b"}}})
	if err == nil || !strings.Contains(err.Error(), "secrets: 2 on older key_ids") || strings.Contains(err.Error(), "plaintext") {
		t.Errorf("verdict %v", err)
	}
	if err := auditVerdict([]etcdproof.Report{{Resource: "secrets", Total: 1, Current: 1, Older: map[string]int{}}}); err != nil {
		t.Errorf("a clean audit fails: %v", err)
	}
}

func TestAPassingAuditIsMarkedPassed(t *testing.T) {
	var out bytes.Buffer
	if _, err := Audit(context.Background(), &fakeStack{keyID: "k"}, progress.New(&out, false)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "✓ audit etcd") {
		t.Errorf("clean audit not marked ✓:\n%s", out.String())
	}
}

func TestWaitPluginKeyChangeSaysInterruptedOnCtrlC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The person presses Ctrl-C while the plugin still reports the old key.
	f := &fakeStack{keyID: "k-v1", onStatus: func(n int) {
		if n == 2 {
			cancel()
		}
	}}
	start := time.Now()
	_, err := WaitPluginKeyChange(ctx, f, "k-v1")
	if !errors.Is(err, runtime.ErrInterrupted) {
		t.Fatalf("WaitPluginKeyChange after Ctrl-C: %v, want an interruption", err)
	}
	if strings.Contains(err.Error(), keyChangeTimeout.String()) || strings.Contains(err.Error(), "still reports") {
		t.Errorf("a cancel reads as a timeout: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the wait took %s to notice the cancel", took)
	}
}

func TestStatusMarksOnlyRunningAndHealthyAsGoodAndFailsOtherwise(t *testing.T) {
	healthy := runtime.Component{Name: "etcd", Running: true, ID: "1", Detail: "healthy"}
	sick := runtime.Component{Name: "trousseau", Running: true, Unhealthy: true, ID: "2", Detail: "unhealthy: /readyz: 503"}
	gone := runtime.Component{Name: "kube-apiserver", Detail: "stopped (pid 3 is gone)"}
	for _, tc := range []struct {
		name       string
		comps      []runtime.Component
		wantErr    []string
		wantMarks  []string
		forbidMark string
	}{
		{"all healthy", []runtime.Component{healthy}, nil, []string{"✓ etcd"}, "✗"},
		{"unhealthy plugin", []runtime.Component{healthy, sick}, []string{"unhealthy: trousseau", "logs"}, []string{"✓ etcd", "✗ trousseau"}, "✓ trousseau"},
		{"killed apiserver", []runtime.Component{healthy, gone}, []string{"not running: kube-apiserver", "go tool mage demo` restarts only what is missing", "only to discard everything"}, []string{"✗ kube-apiserver"}, "✓ kube-apiserver"},
		{"dead vault", []runtime.Component{healthy, {Name: "vault", Detail: "stopped"}}, []string{"not running: vault", "the dev Vault is gone"}, []string{"✗ vault"}, "✓ vault"},
		{"nothing runs", []runtime.Component{{Name: "etcd", Detail: "not running"}}, []string{"not running: start it with `go tool mage demo`"}, []string{"✗ etcd"}, "✓"},
	} {
		var out bytes.Buffer
		err := printStatus(progress.New(&out, false), runtime.Status{Runtime: "local", Components: tc.comps, Logs: "/r/.trousseau/logs/"})
		if (err == nil) != (tc.wantErr == nil) {
			t.Errorf("%s: err %v", tc.name, err)
		}
		for _, w := range tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v lacks %q", tc.name, err, w)
			}
		}
		for _, m := range append(tc.wantMarks, "logs: /r/.trousseau/logs/") {
			if !strings.Contains(out.String(), m) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, m, out.String())
			}
		}
		if tc.name == "dead vault" && err != nil && strings.Contains(err.Error(), "keeps the Secrets") {
			t.Errorf("with the dev Vault gone, status promises the Secrets survive a restart: %v", err)
		}
		if strings.Contains(out.String(), tc.forbidMark) {
			t.Errorf("%s: output has %q:\n%s", tc.name, tc.forbidMark, out.String())
		}
	}
}
