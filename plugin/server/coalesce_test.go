package server

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/trousseau-io/trousseau/plugin/kms"
	"github.com/trousseau-io/trousseau/plugin/kms/kmstest"
)

type decryptResult struct {
	req  int
	resp *kmsapi.DecryptResponse
	err  error
}

// decryptAll sends every request at once, each with its own context, and
// returns the channel their results arrive on.
func decryptAll(h *harness, ctxs []context.Context, reqs []*kmsapi.DecryptRequest) <-chan decryptResult {
	out := make(chan decryptResult, len(reqs))
	for i, req := range reqs {
		go func() {
			resp, err := h.client.Decrypt(ctxs[i], req)
			out <- decryptResult{i, resp, err}
		}()
	}
	return out
}

func encryptSeed(t *testing.T, h *harness) ([]byte, *kmsapi.EncryptResponse) {
	t.Helper()
	s := seed(t)
	enc, err := h.client.Encrypt(callCtx(t, 5*time.Second), &kmsapi.EncryptRequest{Plaintext: s, Uid: "enc"})
	if err != nil {
		t.Fatal(err)
	}
	return s, enc
}

func waitingDecrypts(t *testing.T, h *harness) float64 {
	t.Helper()
	return gaugeValue(t, h.reg, "trousseau_decrypt_waiting")
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no single-series counter %s", name)
	return 0
}

// Field case 16: after a restart the apiserver's 10 watch-decode workers
// miss the same seed at once and send identical Decrypts; they must cost one
// Vault call, not ten.
func TestFieldCase16IdenticalDecryptsShareOneVaultCall(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	s, enc := encryptSeed(t, h)

	release := p.Block()
	defer release()
	const n = 10
	ctxs := make([]context.Context, n)
	reqs := make([]*kmsapi.DecryptRequest, n)
	for i := range n {
		ctxs[i] = callCtx(t, 10*time.Second)
		reqs[i] = &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: fmt.Sprintf("worker-%d", i)}
	}
	results := decryptAll(h, ctxs, reqs)
	// The provider is blocked, so the first call cannot end: every caller
	// counted as waiting has joined that same flight.
	eventually(t, 5*time.Second, "10 Decrypts waiting", func() bool { return waitingDecrypts(t, h) == n })
	release()
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatalf("Decrypt %d: %v", r.req, r.err)
		}
		if !bytes.Equal(r.resp.Plaintext, s) {
			t.Fatalf("Decrypt %d returned a different seed", r.req)
		}
	}
	if got := p.DecryptCalls(); got != 1 {
		t.Fatalf("%d identical concurrent Decrypts made %d provider calls, want 1", n, got)
	}
	if got := counterValue(t, h.reg, "trousseau_decrypt_coalesced_total"); got != n-1 {
		t.Fatalf("trousseau_decrypt_coalesced_total = %v, want %d", got, n-1)
	}
	if got := waitingDecrypts(t, h); got != 0 {
		t.Fatalf("trousseau_decrypt_waiting = %v after every call returned, want 0", got)
	}

	// Nothing is kept once the overlap ends: the next Decrypt of the same
	// seed asks the provider again.
	if _, err := h.client.Decrypt(callCtx(t, 5*time.Second), reqs[0]); err != nil {
		t.Fatal(err)
	}
	if got := p.DecryptCalls(); got != 2 {
		t.Fatalf("a Decrypt after the flight made %d provider calls in all, want 2: plaintext must not be cached", got)
	}
}

func TestConcurrentDecryptsOfDifferentCiphertextsOrKeyIDsAreNotMerged(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	s1, enc1 := encryptSeed(t, h)
	s2, enc2 := encryptSeed(t, h)

	release := p.Block()
	defer release()
	reqs := []*kmsapi.DecryptRequest{
		{Ciphertext: enc1.Ciphertext, KeyId: enc1.KeyId, Uid: "seed-1"},
		{Ciphertext: enc2.Ciphertext, KeyId: enc2.KeyId, Uid: "seed-2"},
		// Same ciphertext, another key_id: sharing would hand it seed 1
		// although the provider rejects this pair.
		{Ciphertext: enc1.Ciphertext, KeyId: "fake-key-2", Uid: "seed-1-wrong-key"},
	}
	ctxs := []context.Context{callCtx(t, 10*time.Second), callCtx(t, 10*time.Second), callCtx(t, 10*time.Second)}
	results := decryptAll(h, ctxs, reqs)
	// While the provider is blocked, three calls in it means three flights.
	eventually(t, 5*time.Second, "three provider calls at once", func() bool { return p.DecryptCalls() == 3 })
	release()
	for range reqs {
		r := <-results
		switch r.req {
		case 0, 1:
			want := [][]byte{s1, s2}[r.req]
			if r.err != nil || !bytes.Equal(r.resp.Plaintext, want) {
				t.Fatalf("Decrypt %s: got another seed or error %v", reqs[r.req].Uid, r.err)
			}
		case 2:
			if status.Code(r.err) != codes.InvalidArgument {
				t.Fatalf("Decrypt with a key_id the ciphertext was not written with = %v, want InvalidArgument", r.err)
			}
		}
	}
	if got := counterValue(t, h.reg, "trousseau_decrypt_coalesced_total"); got != 0 {
		t.Fatalf("trousseau_decrypt_coalesced_total = %v for distinct requests, want 0", got)
	}
}

func TestSharedDecryptErrorReachesEveryWaiter(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	s, enc := encryptSeed(t, h)

	p.SetDecryptErr(kms.Errorf(kms.Unavailable, "injected: Vault is sealed"))
	release := p.Block()
	defer release()
	const n = 5
	ctxs := make([]context.Context, n)
	reqs := make([]*kmsapi.DecryptRequest, n)
	for i := range n {
		ctxs[i] = callCtx(t, 10*time.Second)
		reqs[i] = &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: fmt.Sprintf("worker-%d", i)}
	}
	results := decryptAll(h, ctxs, reqs)
	eventually(t, 5*time.Second, "5 Decrypts waiting", func() bool { return waitingDecrypts(t, h) == n })
	release()
	for range n {
		r := <-results
		if status.Code(r.err) != codes.Unavailable || !strings.Contains(r.err.Error(), "Vault is sealed") {
			t.Fatalf("Decrypt %d = %v, want the shared Unavailable error", r.req, r.err)
		}
	}
	if got := p.DecryptCalls(); got != 1 {
		t.Fatalf("%d failing identical Decrypts made %d provider calls, want 1", n, got)
	}

	// The error is not kept either: once Vault is back, the same request works.
	p.SetDecryptErr(nil)
	resp, err := h.client.Decrypt(callCtx(t, 5*time.Second), reqs[0])
	if err != nil || !bytes.Equal(resp.Plaintext, s) {
		t.Fatalf("Decrypt after the failure cleared: %v", err)
	}
}

// gatedProvider is a kmstest provider whose Decrypt, unlike kmstest's Block,
// honours its context: it waits for the gate or for its context to end, and
// fails if the context ended. A shared call that inherited its first
// caller's cancellation fails here.
type gatedProvider struct {
	*kmstest.Provider
	gate chan struct{}
}

func (p *gatedProvider) Decrypt(ctx context.Context, keyID string, ct []byte) ([]byte, error) {
	pt, err := p.Provider.Decrypt(ctx, keyID, ct)
	select {
	case <-p.gate:
	case <-ctx.Done():
	}
	if ctx.Err() != nil {
		return nil, kms.Errorf(kms.DeadlineExceeded, "fake decrypt cancelled: %v", ctx.Err())
	}
	return pt, err
}

func TestDecryptWaiterWithShortDeadlineLeavesWithoutCancellingTheSharedCall(t *testing.T) {
	p := &gatedProvider{Provider: kmstest.New("fake"), gate: make(chan struct{})}
	h := startServer(t, p, harnessOptions{waitKnown: true})
	s, enc := encryptSeed(t, h)
	req := func(uid string) *kmsapi.DecryptRequest {
		return &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: uid}
	}

	// The short-deadline caller comes first, so it starts the shared call:
	// the worst case, since the call runs on its behalf.
	const short = 200 * time.Millisecond
	shortStart := time.Now()
	shortResult := decryptAll(h, []context.Context{callCtx(t, short)}, []*kmsapi.DecryptRequest{req("short")})
	eventually(t, 5*time.Second, "the short caller's provider call", func() bool { return p.DecryptCalls() == 1 })
	const n = 3
	ctxs := make([]context.Context, n)
	reqs := make([]*kmsapi.DecryptRequest, n)
	for i := range n {
		ctxs[i] = callCtx(t, 10*time.Second)
		reqs[i] = req(fmt.Sprintf("long-%d", i))
	}
	results := decryptAll(h, ctxs, reqs)
	eventually(t, 5*time.Second, "all 4 Decrypts waiting", func() bool { return waitingDecrypts(t, h) == n+1 })

	r := <-shortResult
	if elapsed := time.Since(shortStart); status.Code(r.err) != codes.DeadlineExceeded || elapsed > short+300*time.Millisecond {
		t.Fatalf("short-deadline Decrypt = %v after %s, want DeadlineExceeded within %s", r.err, elapsed, short)
	}
	// The server side has let it go too, while the shared call is still held.
	eventually(t, 5*time.Second, "the short caller to leave the flight", func() bool { return waitingDecrypts(t, h) == n })
	close(p.gate)
	for range n {
		r := <-results
		if r.err != nil || !bytes.Equal(r.resp.Plaintext, s) {
			t.Fatalf("Decrypt %s after the short caller left: %v", reqs[r.req].Uid, r.err)
		}
	}
	if got := p.DecryptCalls(); got != 1 {
		t.Fatalf("made %d provider calls, want 1 shared by all 4 callers", got)
	}
}
