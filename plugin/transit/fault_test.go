package transit

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/internal/fakevault"
	"github.com/trousseau-io/trousseau/plugin/kms"
)

// slack covers scheduling on a loaded 2-core CI machine; the apiserver's own
// deadline is what must hold.
const slack = 250 * time.Millisecond

func TestFieldCase02SlowVaultReturnsWithinCallerDeadline(t *testing.T) {
	for _, tc := range []struct {
		name           string
		requestTimeout time.Duration
		path           string
		call           func(context.Context, *Provider, string) error
		kinds          []kms.Kind
	}{
		{"encrypt, request timeout below the deadline", 2 * time.Second, "/v1/transit/encrypt/k",
			func(ctx context.Context, p *Provider, id string) error {
				_, err := p.Encrypt(ctx, id, []byte("seed"))
				return err
			},
			[]kms.Kind{kms.Unavailable}},
		{"encrypt, request timeout misconfigured above the deadline", 10 * time.Second, "/v1/transit/encrypt/k",
			func(ctx context.Context, p *Provider, id string) error {
				_, err := p.Encrypt(ctx, id, []byte("seed"))
				return err
			},
			[]kms.Kind{kms.DeadlineExceeded}},
		{"decrypt", 2 * time.Second, "/v1/transit/decrypt/k",
			func(ctx context.Context, p *Provider, id string) error {
				_, err := p.Decrypt(ctx, id, []byte("vault:v1:"+base64.StdEncoding.EncodeToString([]byte("c2VlZA=="))))
				return err
			},
			[]kms.Kind{kms.Unavailable, kms.DeadlineExceeded}},
		{"status key read", 2 * time.Second, "/v1/transit/keys/k",
			func(ctx context.Context, p *Provider, _ string) error { _, err := p.CurrentKeyID(ctx); return err },
			[]kms.Kind{kms.Unavailable, kms.DeadlineExceeded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fv := fakevault.New(t)
			cfg := fakeConfig(t, fv.URL)
			cfg.RequestTimeout = config.Duration{Duration: tc.requestTimeout}
			p := newProvider(t, cfg, nil)
			id := mustKeyID(t, p)
			fv.Inject(tc.path, fakevault.Fault{Delay: 4 * time.Second})

			start := time.Now()
			err := tc.call(apiserverCtx(t), p, id)
			if took := time.Since(start); took > 3*time.Second+slack {
				t.Fatalf("returned after %s, past the apiserver's 3s deadline", took)
			}
			wantKind(t, err, tc.kinds...)
			if !strings.Contains(err.Error(), fv.URL) {
				t.Errorf("error does not name the Vault address %s: %v", fv.URL, err)
			}
		})
	}
}

func TestFieldCase02SlowLoginReturnsWithinCallerDeadline(t *testing.T) {
	fv := fakevault.New(t)
	p := newProvider(t, fakeConfig(t, fv.URL), nil)
	fv.Inject("/v1/auth/approle/login", fakevault.Fault{Delay: 4 * time.Second})
	start := time.Now()
	_, err := p.CurrentKeyID(apiserverCtx(t))
	if took := time.Since(start); took > 3*time.Second+slack {
		t.Fatalf("returned after %s, past the apiserver's 3s deadline", took)
	}
	wantKind(t, err, kms.Unavailable, kms.DeadlineExceeded)
	if !strings.Contains(err.Error(), "login") {
		t.Errorf("error does not say the login was slow: %v", err)
	}
}

func TestThrottledOrFailingVaultIsUnavailableWithinDeadline(t *testing.T) {
	for _, status := range []int{429, 500, 502, 503} {
		fv := fakevault.New(t)
		p := newProvider(t, fakeConfig(t, fv.URL), nil)
		id := mustKeyID(t, p)
		fv.Inject("/v1/transit/encrypt/k", fakevault.Fault{Status: status, Body: `{"errors":["overloaded"]}`})
		start := time.Now()
		ct, err := p.Encrypt(apiserverCtx(t), id, []byte("seed"))
		if took := time.Since(start); took > 3*time.Second+slack {
			t.Fatalf("HTTP %d: returned after %s", status, took)
		}
		if ct != nil {
			t.Fatalf("HTTP %d: got a ciphertext with an error", status)
		}
		wantKind(t, err, kms.Unavailable)
	}
}

func TestForbiddenAnswerWithAnExpiredTokenLogsInAgainAndRetriesOnce(t *testing.T) {
	fv := fakevault.New(t)
	p := newProvider(t, fakeConfig(t, fv.URL), nil)
	id := mustKeyID(t, p)
	ct, err := p.Encrypt(apiserverCtx(t), id, []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	before := fv.Logins()
	fv.ExpireTokens() // Vault now answers 403 to the token the provider holds
	pt, err := p.Decrypt(apiserverCtx(t), id, ct)
	if err != nil || string(pt) != "seed" {
		t.Fatalf("Decrypt after a 403 = %q, %v; want the seed after a re-login", pt, err)
	}
	if got := fv.Logins() - before; got != 1 {
		t.Fatalf("%d logins after a 403, want exactly 1", got)
	}
}

func TestForbiddenAnswerWithAValidTokenIsPermissionDeniedWithoutLogin(t *testing.T) {
	fv := fakevault.New(t)
	p := newProvider(t, fakeConfig(t, fv.URL), nil)
	id := mustKeyID(t, p)
	before := fv.Logins()
	// The token still passes lookup-self, so the 403 is the policy's: no
	// new token is minted for it, however often it is asked (field case 13).
	fv.Inject("/v1/transit/decrypt/k", fakevault.Fault{Status: 403, Body: `{"errors":["permission denied"]}`})
	for range 3 {
		_, err := p.Decrypt(apiserverCtx(t), id, []byte("vault:v1:c2VlZA=="))
		wantKind(t, err, kms.PermissionDenied)
	}
	if got := fv.Logins() - before; got != 0 {
		t.Fatalf("%d logins for policy denials, want 0", got)
	}
}

// A non-JSON error body (a proxy's page, or whatever answers at a wrong
// address) may echo the request. Its content never reaches the error, which
// ends up in logs and healthz: for encrypt that would be the DEK seed.
func TestForeignErrorBodiesAreNotQuoted(t *testing.T) {
	s := seed(t)
	b64 := base64.StdEncoding.EncodeToString(s)
	echo := `<html><body>upstream error, request was {"plaintext":"` + b64 + `","key_version":1}</body></html>`
	for _, status := range []int{400, 403, 502} {
		fv := fakevault.New(t)
		p := newProvider(t, fakeConfig(t, fv.URL), nil)
		id := mustKeyID(t, p)
		fv.Inject("/v1/transit/encrypt/k", fakevault.Fault{Status: status, Body: echo})
		_, err := p.Encrypt(apiserverCtx(t), id, s)
		if err == nil {
			t.Fatalf("HTTP %d: no error", status)
		}
		if strings.Contains(err.Error(), b64) || strings.Contains(err.Error(), "upstream error") {
			t.Fatalf("HTTP %d: the error quotes the foreign body with the seed: %v", status, err)
		}
		if status != 403 && !strings.Contains(err.Error(), fmt.Sprintf("an answer of %d bytes that is not Vault's JSON error format", len(echo))) {
			t.Errorf("HTTP %d: the error does not say the answer was not Vault's: %v", status, err)
		}
	}
}

func TestMalformedVaultAnswersNeverYieldACiphertext(t *testing.T) {
	for _, body := range []string{
		`{not json`,
		`{"data":{}}`,
		`{"data":{"ciphertext":""}}`,
		`{"data":{"ciphertext":"vault:v1:"}}`,
		`{"data":{"ciphertext":"c2VlZA=="}}`,
		`{"data":{"ciphertext":"vault:v2:c2VlZA=="}}`, // not the pinned version
		`{"data":{"ciphertext":42}}`,
		``,
	} {
		fv := fakevault.New(t)
		p := newProvider(t, fakeConfig(t, fv.URL), nil)
		id := mustKeyID(t, p)
		fv.Inject("/v1/transit/encrypt/k", fakevault.Fault{Status: 200, Body: body})
		ct, err := p.Encrypt(apiserverCtx(t), id, []byte("seed"))
		if err == nil || len(ct) != 0 {
			t.Fatalf("encrypt answer %q: got ciphertext %q, err %v; want an error and no ciphertext", body, ct, err)
		}
	}
	fv := fakevault.New(t)
	p := newProvider(t, fakeConfig(t, fv.URL), nil)
	id := mustKeyID(t, p)
	ct, err := p.Encrypt(apiserverCtx(t), id, []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"data":{"plaintext":"!!not base64"}}`, `{"data":{}}`, `{oops`} {
		fv.Inject("/v1/transit/decrypt/k", fakevault.Fault{Status: 200, Body: body})
		if pt, err := p.Decrypt(apiserverCtx(t), id, ct); err == nil {
			t.Fatalf("decrypt answer %q: got plaintext of %d bytes and no error", body, len(pt))
		}
	}
}

func TestFieldCase05ConcurrentDecryptsWithExpiredTokenLogInOnce(t *testing.T) {
	fv := fakevault.New(t)
	p := newProvider(t, fakeConfig(t, fv.URL), nil)
	id := mustKeyID(t, p)
	ct, err := p.Encrypt(apiserverCtx(t), id, []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	before := fv.Logins()
	fv.ExpireTokens()

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			pt, err := p.Decrypt(apiserverCtx(t), id, ct)
			if err == nil && string(pt) != "seed" {
				err = kms.Errorf(kms.Internal, "wrong plaintext")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a concurrent Decrypt failed: %v", err)
		}
	}
	if got := fv.Logins() - before; got != 1 {
		t.Fatalf("%d logins for 100 concurrent Decrypts with an expired token, want exactly 1", got)
	}
}

// garbage is shared by the table test and the fuzz seed corpus.
var garbage = []string{
	"",
	"garbage",
	"vault:",
	"vault:v",
	"vault:v1",
	"vault:v1:",
	"vault:vX:c2VlZA==",
	"vault:v1:!!!",
	"vault:v1:c2VlZA", // truncated base64
	"VAULT:V1:c2VlZA==",
	"k8s:enc:kms:v2:trousseau:",
	"vault:v1:" + base64.StdEncoding.EncodeToString([]byte("not the fake's inner base64 !")),
	"vault:v1:" + strings.Repeat("A", 4096),
	"\x00\xff\xfe",
}

func TestFieldCase12GarbageCiphertextIsInvalidInput(t *testing.T) {
	fv := fakevault.New(t)
	p := newProvider(t, fakeConfig(t, fv.URL), nil)
	id := mustKeyID(t, p)
	for _, ct := range garbage {
		pt, err := p.Decrypt(apiserverCtx(t), id, []byte(ct))
		if pt != nil {
			t.Errorf("%q: got a plaintext", ct)
		}
		if kms.KindOf(err) != kms.InvalidInput {
			t.Errorf("%q: got %v (%v), want invalid_input", ct, kms.KindOf(err), err)
		}
		if err != nil && len(ct) > 8 && strings.Contains(err.Error(), ct) {
			t.Errorf("%q: the error echoes the ciphertext", ct)
		}
	}
}

func FuzzTransitDecrypt(f *testing.F) {
	for _, g := range garbage {
		f.Add([]byte(g))
	}
	f.Add([]byte("vault:v1:" + base64.StdEncoding.EncodeToString([]byte(base64.StdEncoding.EncodeToString([]byte("seed"))))))
	fv := fakevault.New(f)
	p := newProvider(f, fakeConfig(f, fv.URL), nil)
	id := mustKeyID(f, p)
	f.Fuzz(func(t *testing.T, ct []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		pt, err := p.Decrypt(ctx, id, ct)
		switch {
		case err == nil && !bytes.HasPrefix(ct, []byte("vault:v")):
			t.Fatalf("%q decrypted although it is no transit ciphertext", ct)
		case err == nil && pt == nil:
			t.Fatalf("%q: no error and no plaintext", ct)
		case err != nil && kms.KindOf(err) != kms.InvalidInput:
			t.Fatalf("%q: got %v (%v), want invalid_input", ct, kms.KindOf(err), err)
		}
	})
}

func TestFieldCase03UnreachableVaultFailsFastNamingTheAddress(t *testing.T) {
	// Loopback only: a closed port, and a listener that accepts TCP but
	// never answers, which is what a black-holed address looks like once
	// the SYN gets through.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := "http://" + closed.Addr().String()
	closed.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	for name, addr := range map[string]string{"closed port": closedAddr, "silent listener": "http://" + silent.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			cfg := fakeConfig(t, addr)
			p := newProvider(t, cfg, nil)
			for op, call := range map[string]func(context.Context) error{
				"status":  func(ctx context.Context) error { _, err := p.CurrentKeyID(ctx); return err },
				"encrypt": func(ctx context.Context) error { _, err := p.Encrypt(ctx, p.keyIDFor(1), []byte("seed")); return err },
			} {
				start := time.Now()
				err := call(apiserverCtx(t))
				if took := time.Since(start); took > 3*time.Second+slack {
					t.Fatalf("%s returned after %s", op, took)
				}
				wantKind(t, err, kms.Unavailable)
				if !strings.Contains(err.Error(), addr) {
					t.Errorf("%s: error does not name %s: %v", op, addr, err)
				}
			}
		})
	}
}
