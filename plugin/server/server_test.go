package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/trousseau-io/trousseau/plugin/ciphertext"
	"github.com/trousseau-io/trousseau/plugin/kms"
	"github.com/trousseau-io/trousseau/plugin/kms/kmstest"
	"github.com/trousseau-io/trousseau/plugin/ops"
)

func seed(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncryptUsesStatusKeyID(t *testing.T) {
	p := kmstest.New("fake")
	p.SetKeyID("key-v1")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	ctx := callCtx(t, 5*time.Second)

	st, err := h.client.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s1 := seed(t)
	enc1, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: s1, Uid: "uid-1"})
	if err != nil {
		t.Fatal(err)
	}
	if enc1.KeyId != st.KeyId || st.KeyId != "key-v1" {
		t.Fatalf("Encrypt key_id %q, Status key_id %q: both must be key-v1", enc1.KeyId, st.KeyId)
	}

	// The backend rotates. Until the cache refreshes, Status still says
	// key-v1, so Encrypt must keep using key-v1: the apiserver only adopts a
	// seed whose Encrypt key_id equals the Status key_id it saw.
	p.SetKeyID("key-v2")
	enc, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "uid-2"})
	if err != nil {
		t.Fatal(err)
	}
	if enc.KeyId != "key-v1" {
		t.Fatalf("before the refresh Encrypt used %q, want the Status key key-v1", enc.KeyId)
	}

	h.srv.RefreshStatus(ctx)
	st, err = h.client.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	s2 := seed(t)
	enc2, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: s2, Uid: "uid-3"})
	if err != nil {
		t.Fatal(err)
	}
	if st.KeyId != "key-v2" || enc2.KeyId != "key-v2" {
		t.Fatalf("after the refresh Status key_id %q, Encrypt key_id %q: both must be key-v2", st.KeyId, enc2.KeyId)
	}

	// Old and new ciphertexts decrypt with the key_id stored beside them.
	for _, c := range []struct {
		enc  *kmsapi.EncryptResponse
		seed []byte
	}{{enc1, s1}, {enc2, s2}} {
		dec, err := h.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: c.enc.Ciphertext, KeyId: c.enc.KeyId, Uid: "uid-d"})
		if err != nil {
			t.Fatalf("Decrypt with key_id %s: %v", c.enc.KeyId, err)
		}
		if !bytes.Equal(dec.Plaintext, c.seed) {
			t.Fatalf("Decrypt with key_id %s returned a different seed", c.enc.KeyId)
		}
	}
	if len(enc1.Annotations) != 0 {
		t.Fatalf("Encrypt returned annotations %v; the apiserver validates their keys, send none", enc1.Annotations)
	}
	if name, _, err := ciphertext.Decode(enc1.Ciphertext); err != nil || name != "fake" {
		t.Fatalf("ciphertext is not a trousseau v1 envelope for provider fake: %q, %v", name, err)
	}
}

func TestEncryptBeforeAnyKeyStatusIsUnavailableWithTheReason(t *testing.T) {
	p := kmstest.New("fake")
	p.SetKeyID("")
	p.SetStatusErr(kms.Errorf(kms.Unavailable, "dial tcp 192.0.2.1:8200: i/o timeout"))
	h := startServer(t, p, harnessOptions{})
	eventually(t, 5*time.Second, "the first refresh", func() bool { return p.StatusCalls() > 0 && !strings.Contains(h.srv.Snapshot().Healthz, "starting") })

	_, err := h.client.Encrypt(callCtx(t, 5*time.Second), &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "192.0.2.1:8200") {
		t.Fatalf("Encrypt = %v, want Unavailable naming the address", err)
	}
	if p.EncryptCalls() != 0 {
		t.Fatal("Encrypt reached the provider without a known key_id")
	}
}

func TestProviderErrorKindsMapToGRPCCodes(t *testing.T) {
	cases := []struct {
		kind kms.Kind
		want codes.Code
	}{
		{kms.InvalidInput, codes.InvalidArgument},
		{kms.Unavailable, codes.Unavailable},
		{kms.PermissionDenied, codes.PermissionDenied},
		{kms.NotFound, codes.FailedPrecondition},
		{kms.DeadlineExceeded, codes.DeadlineExceeded},
		{kms.Internal, codes.Internal},
	}
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	ctx := callCtx(t, 5*time.Second)
	good, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			p.SetEncryptErr(kms.Errorf(tc.kind, "injected %s", tc.kind))
			p.SetDecryptErr(kms.Errorf(tc.kind, "injected %s", tc.kind))
			defer p.SetEncryptErr(nil)
			defer p.SetDecryptErr(nil)
			_, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"})
			if status.Code(err) != tc.want || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("Encrypt = %v, want %s carrying the provider's message", err, tc.want)
			}
			_, err = h.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: good.Ciphertext, KeyId: good.KeyId, Uid: "u"})
			if status.Code(err) != tc.want {
				t.Fatalf("Decrypt = %v, want %s", err, tc.want)
			}
		})
	}
	if got := rpcCount(t, h.reg, "Encrypt", "PermissionDenied"); got != 1 {
		t.Fatalf("trousseau_rpc_duration_seconds{method=Encrypt,code=PermissionDenied} count = %v, want 1", got)
	}
}

// rpcCount reads the sample count of one trousseau_rpc_duration_seconds series.
func rpcCount(t *testing.T, reg *prometheus.Registry, method, code string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "trousseau_rpc_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	t.Fatalf("no trousseau_rpc_duration_seconds series for method=%s code=%s", method, code)
	return 0
}

func TestFieldCase12GarbageCiphertextIsInvalidArgument(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	ctx := callCtx(t, 5*time.Second)
	otherProvider, err := ciphertext.Encode("other-kms", []byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":           nil,
		"garbage":         []byte("\x00\xffnot a ciphertext"),
		"truncated":       []byte("tr\x01\x04fa"),
		"future format":   []byte("tr\x09\x04fakeXX"),
		"other provider":  otherProvider,
		"raw vault bytes": []byte("vault:v1:AAAA"),
	}
	for name, ct := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := h.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: ct, KeyId: "fake-key-1", Uid: "u"})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Decrypt = %v, want InvalidArgument", err)
			}
		})
	}
	if st, err := h.client.Status(ctx, &kmsapi.StatusRequest{}); err != nil || st.Healthz != "ok" {
		t.Fatalf("garbage input must not make the plugin unhealthy: %v %v", st, err)
	}
}

func TestFieldCase02ProviderBlockingPastTheDeadlineReturnsWithinIt(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	good, err := h.client.Encrypt(callCtx(t, 5*time.Second), &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"})
	if err != nil {
		t.Fatal(err)
	}
	opsSrv, err := ops.Listen("127.0.0.1:0", h.reg, func() (bool, string) {
		s := h.srv.Snapshot()
		return s.Healthy(), s.Healthz
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opsCtx, stopOps := context.WithCancel(context.Background())
	defer stopOps()
	go opsSrv.Serve(opsCtx)

	// Vault answering after 4s against the apiserver's 3s timeout, scaled
	// down: the provider ignores its context and never answers in time.
	release := p.Block()
	defer release()
	const deadline = 300 * time.Millisecond
	for _, rpc := range []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"Encrypt", func(ctx context.Context) error {
			_, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"})
			return err
		}},
		{"Decrypt", func(ctx context.Context) error {
			_, err := h.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: good.Ciphertext, KeyId: good.KeyId, Uid: "u"})
			return err
		}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		err := rpc.do(ctx)
		elapsed := time.Since(start)
		cancel()
		if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
			t.Fatalf("%s = %v, want DeadlineExceeded or Unavailable", rpc.name, err)
		}
		if elapsed > deadline+200*time.Millisecond {
			t.Fatalf("%s took %s, past its %s deadline", rpc.name, elapsed, deadline)
		}
	}

	// Status stays fast: it is served from the cache, not the stuck backend.
	start := time.Now()
	if _, err := h.client.Status(callCtx(t, deadline), &kmsapi.StatusRequest{}); err != nil {
		t.Fatalf("Status with a stuck backend: %v", err)
	}
	if elapsed := time.Since(start); elapsed > deadline {
		t.Fatalf("Status took %s with a stuck backend", elapsed)
	}
	resp, err := http.Get("http://" + opsSrv.Addr() + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/livez = %d while the backend is stuck, want 200", resp.StatusCode)
	}
}

func TestFieldCase11PermissionDeniedForeverKeepsServingAndNamesIt(t *testing.T) {
	p := kmstest.New("vault-transit")
	denied := kms.Errorf(kms.PermissionDenied, "permission denied on transit/keys/kubernetes: check the policy")
	p.SetStatusErr(denied)
	p.SetEncryptErr(denied)
	h := startServer(t, p, harnessOptions{refresh: 50 * time.Millisecond})
	ctx := callCtx(t, 5*time.Second)
	eventually(t, 5*time.Second, "several refreshes", func() bool { return p.StatusCalls() >= 3 })

	st, err := h.client.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status must never fail for backend trouble: %v", err)
	}
	if st.Version != "v2" || st.Healthz == "ok" || !strings.Contains(st.Healthz, "vault-transit: permission denied") {
		t.Fatalf("Status = %+v, want v2 with healthz naming the denial", st)
	}
	if len(st.Healthz) >= 200 {
		t.Fatalf("healthz is %d bytes, want under 200", len(st.Healthz))
	}
	_, err = h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Encrypt = %v, want PermissionDenied", err)
	}
	select {
	case err := <-h.done:
		t.Fatalf("server exited on an auth failure: %v", err)
	default:
	}
	if gaugeValue(t, h.reg, "trousseau_healthy") != 0 {
		t.Fatal("trousseau_healthy must be 0 while denied")
	}

	// Field case 13: it recovers on its own when the permission returns.
	p.SetStatusErr(nil)
	p.SetEncryptErr(nil)
	eventually(t, 5*time.Second, "recovery", func() bool { return h.srv.Snapshot().Healthy() })
	if _, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "u"}); err != nil {
		t.Fatalf("Encrypt after recovery: %v", err)
	}
}

func TestShutdownDrainsInFlightCallsThenRemovesTheSocket(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	release := p.Block()
	defer release()

	s := seed(t)
	result := make(chan error, 1)
	go func() {
		resp, err := h.client.Encrypt(callCtx(t, 10*time.Second), &kmsapi.EncryptRequest{Plaintext: s, Uid: "in-flight"})
		if err == nil && len(resp.Ciphertext) == 0 {
			err = errors.New("empty ciphertext")
		}
		result <- err
	}()
	eventually(t, 5*time.Second, "the call to reach the provider", func() bool { return p.EncryptCalls() == 1 })

	h.cancel() // SIGTERM
	eventually(t, 5*time.Second, "the drain to start", func() bool { return strings.Contains(h.logs.String(), "draining") })
	select {
	case err := <-h.done:
		t.Fatalf("Serve returned (%v) while a call was in flight", err)
	default:
	}
	release()
	if err := <-result; err != nil {
		t.Fatalf("in-flight Encrypt did not complete during the drain: %v", err)
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Lstat(h.path); !os.IsNotExist(err) {
		t.Fatalf("socket %s still exists after shutdown (lstat: %v)", h.path, err)
	}
}

func TestShutdownGraceCutsCallsThatNeverFinish(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true, grace: 200 * time.Millisecond})
	release := p.Block()
	defer release()
	result := make(chan error, 1)
	go func() {
		_, err := h.client.Encrypt(callCtx(t, 30*time.Second), &kmsapi.EncryptRequest{Plaintext: seed(t), Uid: "stuck"})
		result <- err
	}()
	eventually(t, 5*time.Second, "the call to reach the provider", func() bool { return p.EncryptCalls() == 1 })
	start := time.Now()
	if err := h.stop(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("shutdown took %s with a 200ms grace", elapsed)
	}
	if err := <-result; status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Fatalf("cut call = %v, want Unavailable or Canceled", err)
	}
	if _, err := os.Lstat(h.path); !os.IsNotExist(err) {
		t.Fatalf("socket still exists after shutdown (lstat: %v)", err)
	}
}

func TestRPCLogsCarryTheUIDButNeverTheSeed(t *testing.T) {
	p := kmstest.New("fake")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	ctx := callCtx(t, 5*time.Second)
	s := seed(t)
	enc, err := h.client.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: s, Uid: "7d4e-uid-enc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "7d4e-uid-dec"}); err != nil {
		t.Fatal(err)
	}
	logs := h.logs.String()
	for _, uid := range []string{"7d4e-uid-enc", "7d4e-uid-dec"} {
		if !strings.Contains(logs, uid) {
			t.Errorf("logs lack request uid %s:\n%s", uid, logs)
		}
	}
	assertAbsent(t, logs, s)
}

// assertAbsent fails if secret shows up in logs raw, as base64 or as hex.
func assertAbsent(t *testing.T, logs string, secret []byte) {
	t.Helper()
	for name, form := range encodings(secret) {
		if strings.Contains(logs, form) {
			t.Fatalf("logs contain the seed (%s form)", name)
		}
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single-series gauge %s", name)
	return 0
}

// encodings are the forms in which a leaked secret would show up in logs.
func encodings(secret []byte) map[string]string {
	return map[string]string{
		"raw":        string(secret),
		"base64":     base64.StdEncoding.EncodeToString(secret),
		"base64 raw": base64.RawStdEncoding.EncodeToString(secret),
		"base64 url": base64.URLEncoding.EncodeToString(secret),
		"hex":        hex.EncodeToString(secret),
	}
}
