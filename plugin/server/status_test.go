package server

import (
	"strings"
	"sync"
	"testing"
	"time"

	kmsapi "k8s.io/kms/apis/v2"

	"github.com/trousseau-io/trousseau/plugin/kms"
	"github.com/trousseau-io/trousseau/plugin/kms/kmstest"
)

func TestStatusKeepsLastKeyIDWhenProviderFails(t *testing.T) {
	p := kmstest.New("vault-transit")
	p.SetKeyID("transit-3f9a1c2b7d4e-v3")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	ctx := callCtx(t, 5*time.Second)

	p.SetKeyID("")
	p.SetStatusErr(kms.Errorf(kms.Unavailable, "dial tcp 192.0.2.1:8200: i/o timeout"))
	h.srv.RefreshStatus(ctx)

	st, err := h.client.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status must not fail for backend trouble: %v", err)
	}
	if st.KeyId != "transit-3f9a1c2b7d4e-v3" {
		t.Fatalf("key_id = %q, want the last known transit-3f9a1c2b7d4e-v3", st.KeyId)
	}
	if st.Healthz != "vault-transit: dial tcp 192.0.2.1:8200: i/o timeout" {
		t.Fatalf("healthz = %q, want the provider's reason naming the address", st.Healthz)
	}
	// The outage is logged once, not on every refresh.
	h.srv.RefreshStatus(ctx)
	h.srv.RefreshStatus(ctx)
	if n := strings.Count(h.logs.String(), "key status unhealthy"); n != 1 {
		t.Fatalf("logged the outage %d times over three failed refreshes, want once", n)
	}
	// Writes may continue on the last key while the backend recovers.
	if _, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"}); err != nil {
		t.Fatalf("Encrypt with a known key_id and a failing status: %v", err)
	}
}

func TestStatusBeforeAnySuccessReportsUnknownKeyID(t *testing.T) {
	p := kmstest.New("fake")
	release := p.Block()
	defer release()
	h := startServer(t, p, harnessOptions{})
	st, err := h.client.Status(callCtx(t, 5*time.Second), &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v2" || st.KeyId != "unknown" || st.Healthz == "ok" || !strings.HasPrefix(st.Healthz, "fake: ") {
		t.Fatalf("Status = %+v, want v2, key_id unknown and a reason naming the provider", st)
	}
}

func TestStatusLoadOnProviderIsBoundedUnderProbeStorm(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true, refresh: 20 * time.Second})
	ctx := callCtx(t, 30*time.Second)
	before := p.StatusCalls()

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				st, err := h.client.Status(ctx, &kmsapi.StatusRequest{})
				if err == nil && st.Healthz != "ok" {
					t.Errorf("healthz = %q during the storm", st.Healthz)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Status during the storm: %v", err)
	}
	if extra := p.StatusCalls() - before; extra > 2 {
		t.Fatalf("1000 Status calls caused %d CurrentKeyID calls, want at most 2", extra)
	}
}

func TestStatusRefreshAdmitsOneStuckProviderCallAtATime(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true, refresh: 100 * time.Millisecond})
	release := p.Block()
	defer release()
	before := p.StatusCalls()
	// Each refresh times out after 100ms; many go by while the first
	// provider call is stuck.
	eventually(t, 5*time.Second, "a refresh to report the stuck backend", func() bool {
		return strings.Contains(h.srv.Snapshot().Healthz, "still running")
	})
	if calls := p.StatusCalls() - before; calls != 1 {
		t.Fatalf("%d CurrentKeyID calls are stuck at once, want 1", calls)
	}
	if got := h.srv.Snapshot().KeyID; got != "fake-key-1" {
		t.Fatalf("key_id = %q while the backend is stuck, want the last known fake-key-1", got)
	}
	release()
	eventually(t, 5*time.Second, "recovery", func() bool { return h.srv.Snapshot().Healthy() })
}

func TestHealthzIsOneShortLine(t *testing.T) {
	long := "line one\nline two " + strings.Repeat("é", 300)
	got := truncate("vault-transit: " + long)
	if len(got) > maxHealthzLen || strings.Contains(got, "\n") || !strings.HasSuffix(got, "...") {
		t.Fatalf("truncate gave %d bytes %q, want one line of at most %d bytes ending in ...", len(got), got, maxHealthzLen)
	}
	if !strings.HasPrefix(got, "vault-transit: line one line two é") {
		t.Fatalf("truncate lost the start of the reason: %q", got)
	}
	if !strings.HasSuffix(strings.TrimSuffix(got, "..."), "é") {
		t.Fatalf("truncate split a rune: %q", got)
	}
}

// TestHealthzKeepsOurReasonsWhole: the fix is at the end of a reason, so a
// limit that cuts our own messages hides exactly the part that matters.
func TestHealthzKeepsOurReasonsWhole(t *testing.T) {
	cases := []struct{ name, reason string }{
		{"403 on the key read, long address and namespace", "vault-transit: read_key on transit key kubernetes-prod at mount transit-cluster-a on https://vault.vault-system.svc.cluster.local:8200 (namespace platform/kubernetes) denied (HTTP 403) to a valid token: check provider.vault.keyName and transitMount (Vault also answers 403 for a key the policy does not cover, such as one that does not exist); if both are right, grant the policy read on transit-cluster-a/keys/kubernetes-prod"},
		{"policy missing both capabilities", `vault-transit: Vault policy denies encrypt and decrypt on transit key kubernetes-prod at mount transit-cluster-a on https://vault.vault-system.svc.cluster.local:8200: add to the plugin's policy: path "transit-cluster-a/encrypt/kubernetes-prod" { capabilities = ["update"] } path "transit-cluster-a/decrypt/kubernetes-prod" { capabilities = ["update"] }`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := truncate(tc.reason); got != tc.reason {
				t.Fatalf("truncate cut a %d-byte reason to %q", len(tc.reason), got)
			}
		})
	}
}
