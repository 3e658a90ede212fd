package transit

import (
	"bytes"
	"context"
	"github.com/trousseau-io/trousseau/plugin/internal/logbuf"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/keyid"
	"github.com/trousseau-io/trousseau/plugin/kms"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

func TestRoundTripAgainstRealVault(t *testing.T) {
	cfg, _ := isolatedKey(t, vaultdev.BootstrapOptions{TokenTTL: time.Hour})
	reg := prometheus.NewRegistry()
	p := newProvider(t, cfg, reg)
	id := mustKeyID(t, p)
	if v, err := keyid.TransitVersion(id); err != nil || v != 1 {
		t.Fatalf("key_id %s: version %d, %v; want 1", id, v, err)
	}
	pt := seed(t)
	ct, err := p.Encrypt(apiserverCtx(t), id, pt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ct, []byte("vault:v1:")) || len(ct) > 1024 {
		t.Fatalf("ciphertext of %d bytes does not look like vault:v1:…", len(ct))
	}
	got, err := p.Decrypt(apiserverCtx(t), id, ct)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip failed: %v", err)
	}

	if v := gauge(t, reg, "trousseau_key_version"); v != 1 {
		t.Errorf("trousseau_key_version = %v, want 1", v)
	}
	if ttl := gauge(t, reg, "trousseau_vault_token_ttl_seconds"); ttl < 3000 || ttl > 3600 {
		t.Errorf("trousseau_vault_token_ttl_seconds = %v, want about an hour", ttl)
	}
	for _, op := range []string{"read_key", "capabilities", "encrypt", "decrypt"} {
		if n := histogramCount(t, reg, "trousseau_vault_request_duration_seconds", map[string]string{"operation": op, "status": "ok"}); n != 1 {
			t.Errorf("%s observed %d times with status ok, want 1", op, n)
		}
	}
}

func TestEncryptRejectsAKeyIDOfAnotherKey(t *testing.T) {
	cfg, _ := isolatedKey(t, vaultdev.BootstrapOptions{})
	p := newProvider(t, cfg, nil)
	foreign := keyid.FromTransit(cfg.Address, "", cfg.TransitMount, "some-other-key", 1)
	ct, err := p.Encrypt(apiserverCtx(t), foreign, []byte("seed"))
	if ct != nil {
		t.Fatal("encrypted under a key_id that names another key")
	}
	wantKind(t, err, kms.InvalidInput)
}

func TestFieldCase07RotationKeepsOldCiphertextAndMovesKeyID(t *testing.T) {
	cfg, _ := isolatedKey(t, vaultdev.BootstrapOptions{})
	p := newProvider(t, cfg, nil)
	oldID := mustKeyID(t, p)
	pt := seed(t)
	oldCT, err := p.Encrypt(apiserverCtx(t), oldID, pt)
	if err != nil {
		t.Fatal(err)
	}

	v, err := vaultdev.Rotate(apiserverCtx(t), devVault(t).RootClient(), cfg.TransitMount, cfg.KeyName)
	if err != nil || v != 2 {
		t.Fatalf("rotate: version %d, %v", v, err)
	}
	newID := mustKeyID(t, p)
	if newID == oldID {
		t.Fatal("CurrentKeyID did not change after rotation")
	}
	if got, _ := keyid.TransitVersion(newID); got != 2 {
		t.Fatalf("new key_id %s names version %d, want 2", newID, got)
	}
	newCT, err := p.Encrypt(apiserverCtx(t), newID, pt)
	if err != nil || !bytes.HasPrefix(newCT, []byte("vault:v2:")) {
		t.Fatalf("Encrypt with the new key_id: %q, %v; want vault:v2:…", prefix(newCT), err)
	}
	for name, ct := range map[string][]byte{"old": oldCT, "new": newCT} {
		got, err := p.Decrypt(apiserverCtx(t), oldID, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%s ciphertext after rotation: %v", name, err)
		}
	}
}

func TestFieldCase08ShortLivedAppRoleTokensUnderContinuousLoad(t *testing.T) {
	t.Parallel()
	const loop = 70 * time.Second
	cfg, creds := isolatedKey(t, vaultdev.BootstrapOptions{TokenTTL: 10 * time.Second, TokenMaxTTL: 30 * time.Second})
	var logs logbuf.Buffer
	reg := prometheus.NewRegistry()
	p, err := New(context.Background(), cfg, Options{Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var calls int
	var failures []string
	end := time.Now().Add(loop)
	for time.Now().Before(end) {
		id, err := p.CurrentKeyID(apiserverCtx(t))
		if err != nil {
			failures = append(failures, time.Now().Format(time.TimeOnly)+" status: "+err.Error())
			continue
		}
		pt := seed(t)
		ct, err := p.Encrypt(apiserverCtx(t), id, pt)
		if err == nil {
			var got []byte
			got, err = p.Decrypt(apiserverCtx(t), id, ct)
			if err == nil && !bytes.Equal(got, pt) {
				err = kms.Errorf(kms.Internal, "plaintext mismatch")
			}
		}
		if err != nil {
			failures = append(failures, time.Now().Format(time.TimeOnly)+" "+err.Error())
		}
		calls++
		time.Sleep(50 * time.Millisecond) // pacing the load, not synchronisation
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d iterations failed across token expiries:\n%s", len(failures), calls, strings.Join(failures, "\n"))
	}
	// 70s of 30s max-TTL tokens needs the first login and at least two more.
	if n := counter(t, reg, "trousseau_vault_logins_total", "success"); n < 3 {
		t.Fatalf("%v successful logins in %s with a 30s max TTL, want at least 3", n, loop)
	}
	// Renewal, not re-login, carries the token between logins: re-logging
	// in every 10s TTL would take about 7 logins.
	if n := counter(t, reg, "trousseau_vault_logins_total", "success"); n > 4 {
		t.Fatalf("%v logins in %s: tokens are not being renewed", n, loop)
	}
	if n := counter(t, reg, "trousseau_vault_logins_total", "failure"); n != 0 {
		t.Fatalf("%v failed logins", n)
	}
	// Field case 10: the captured logs hold no credential.
	for _, f := range []string{creds.RoleIDFile, creds.SecretIDFile} {
		b, _ := os.ReadFile(f)
		if secret := strings.TrimSpace(string(b)); strings.Contains(logs.String(), secret) {
			t.Fatalf("logs contain the content of %s", f)
		}
	}
	if strings.Contains(logs.String(), "hvs.") {
		t.Fatal("logs contain a Vault token")
	}
	t.Logf("%d iterations, %v logins, no failures", calls, counter(t, reg, "trousseau_vault_logins_total", "success"))
}

func TestFieldCase04PolicyMissingEncryptOrDecryptIsReported(t *testing.T) {
	for _, missing := range []string{"decrypt", "encrypt"} {
		t.Run(missing, func(t *testing.T) {
			cfg, creds := isolatedKey(t, vaultdev.BootstrapOptions{})
			keep := map[string]string{"decrypt": "encrypt", "encrypt": "decrypt"}[missing]
			writePolicy(t, creds.PolicyName, policyFor(cfg, "keys", keep))
			p := newProvider(t, cfg, nil)
			id, err := p.CurrentKeyID(apiserverCtx(t))
			if id == "" {
				t.Fatal("CurrentKeyID returned no key_id; it must still report the key it checked")
			}
			wantKind(t, err, kms.PermissionDenied)
			if !strings.Contains(err.Error(), "denies "+missing+" on") || strings.Contains(err.Error(), "denies "+keep) {
				t.Fatalf("error does not name exactly the missing %s capability: %v", missing, err)
			}
		})
	}
}

func TestFieldCase09MissingKeyMountOrForbiddenReadIsClear(t *testing.T) {
	existing, _ := isolatedKey(t, vaultdev.BootstrapOptions{}) // also ensures the transit mount exists
	root := devVault(t).RootClient()
	for _, tc := range []struct {
		name, mount, key string
		ops              []string
		want             kms.Kind
		mention          string
		policyKey        string // the key the policy covers; "" = key
	}{
		{"missing key", "transit", "never-created", []string{"keys", "encrypt", "decrypt"},
			kms.NotFound, "transit key never-created not found at mount transit on " + existing.Address, ""},
		{"missing mount", "no-such-mount", "k", []string{"keys", "encrypt", "decrypt"},
			kms.NotFound, "vault secrets enable -path=no-such-mount transit", ""},
		{"forbidden key read", "transit", existing.KeyName, []string{"encrypt", "decrypt"},
			kms.PermissionDenied, "grant the policy read on transit/keys/" + existing.KeyName, ""},
		// A least-privilege policy covers only the real key, so Vault
		// answers a misspelt key name with 403, not 404.
		{"misspelt key under a least-privilege policy", "transit", existing.KeyName + "-typo", []string{"keys", "encrypt", "decrypt"},
			kms.PermissionDenied, "check provider.vault.keyName and transitMount", existing.KeyName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Vault{Address: existing.Address, TransitMount: tc.mount, KeyName: tc.key}
			policy := "p-" + strings.ReplaceAll(tc.name, " ", "-")
			policyCfg := cfg
			if tc.policyKey != "" {
				policyCfg.KeyName = tc.policyKey
			}
			writePolicy(t, policy, policyFor(policyCfg, tc.ops...))
			cfg.Auth = tokenAuth(t, root, policy)
			p := newProvider(t, cfg, nil)
			id, err := p.CurrentKeyID(apiserverCtx(t))
			if id != "" {
				t.Errorf("got key_id %s for a key that cannot be read", id)
			}
			wantKind(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q does not mention %q", err, tc.mention)
			}
			// The server's healthz keeps 512 bytes; the fix must fit whole.
			if reason := "vault-transit: " + err.Error(); len(reason) > 512 {
				t.Fatalf("reason is %d bytes, over the 512 healthz keeps: %q", len(reason), reason)
			}
		})
	}
}

func TestFieldCase13RevokedPermissionIsReportedAndRecoversOnItsOwn(t *testing.T) {
	cfg, creds := isolatedKey(t, vaultdev.BootstrapOptions{})
	reg := prometheus.NewRegistry()
	p := newProvider(t, cfg, reg)
	id := mustKeyID(t, p)
	ct, err := p.Encrypt(apiserverCtx(t), id, []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	logins := counter(t, reg, "trousseau_vault_logins_total", "success")

	writePolicy(t, creds.PolicyName, policyFor(cfg, "keys"))
	_, err = p.CurrentKeyID(apiserverCtx(t))
	wantKind(t, err, kms.PermissionDenied)
	_, err = p.Encrypt(apiserverCtx(t), id, []byte("seed"))
	wantKind(t, err, kms.PermissionDenied)
	_, err = p.Decrypt(apiserverCtx(t), id, ct)
	wantKind(t, err, kms.PermissionDenied)
	if n := counter(t, reg, "trousseau_vault_logins_total", "success"); n != logins {
		t.Fatalf("policy denials caused %v new logins; the token was valid", n-logins)
	}

	restored, err := vaultdev.Policy(cfg.TransitMount, cfg.KeyName)
	if err != nil {
		t.Fatal(err)
	}
	writePolicy(t, creds.PolicyName, restored)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = p.CurrentKeyID(apiserverCtx(t))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("provider did not recover after the policy was restored: %v", err)
	}
	if pt, err := p.Decrypt(apiserverCtx(t), id, ct); err != nil || string(pt) != "seed" {
		t.Fatalf("Decrypt after recovery: %v", err)
	}
}

func TestFieldCase06CredentialFilesWithWhitespaceWorkAgainstRealVault(t *testing.T) {
	cfg, creds := isolatedKey(t, vaultdev.BootstrapOptions{})
	for _, f := range []string{creds.RoleIDFile, creds.SecretIDFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("  \t"+strings.TrimSpace(string(b))+" \r\n\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := newProvider(t, cfg, nil)
	id := mustKeyID(t, p)
	if _, err := p.Encrypt(apiserverCtx(t), id, []byte("seed")); err != nil {
		t.Fatal(err)
	}

	b, _ := os.ReadFile(creds.SecretIDFile)
	if err := os.WriteFile(creds.SecretIDFile, []byte(`"`+strings.TrimSpace(string(b))+`"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), cfg, Options{}); err == nil || !strings.Contains(err.Error(), creds.SecretIDFile) {
		t.Fatalf("a quoted secret-id file gave %v, want an error naming %s", err, creds.SecretIDFile)
	}
}

func TestFieldCase14RotationDuringStatusEncryptLoopNeverMismatches(t *testing.T) {
	t.Parallel()
	cfg, _ := isolatedKey(t, vaultdev.BootstrapOptions{})
	p := newProvider(t, cfg, nil)
	root := devVault(t).RootClient()

	const rotations = 8
	done := make(chan error, 1)
	go func() {
		for range rotations {
			time.Sleep(250 * time.Millisecond) // spreads rotations across the loop, not synchronisation
			if _, err := vaultdev.Rotate(context.Background(), root, cfg.TransitMount, cfg.KeyName); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	seen := map[int]bool{}
	var iterations int
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		default:
		}
		id := mustKeyID(t, p)
		want, _ := keyid.TransitVersion(id)
		ct, err := p.Encrypt(apiserverCtx(t), id, []byte("seed"))
		if err != nil {
			t.Fatalf("Encrypt with key_id %s: %v", id, err)
		}
		if !bytes.HasPrefix(ct, []byte("vault:v"+strconv.Itoa(want)+":")) {
			t.Fatalf("key_id %s (version %d) produced %s…", id, want, prefix(ct))
		}
		seen[want] = true
		iterations++
	}
	if len(seen) < 3 {
		t.Fatalf("the loop saw only versions %v in %d iterations; rotation did not overlap the loop", seen, iterations)
	}
	t.Logf("%d iterations across %d key versions, no mismatch", iterations, len(seen))
}

// policyFor grants only the listed Transit operations on cfg's key.
func policyFor(cfg config.Vault, ops ...string) string {
	var b strings.Builder
	for _, op := range ops {
		c := "update"
		if op == "keys" {
			c = "read"
		}
		b.WriteString("path \"" + cfg.TransitMount + "/" + op + "/" + cfg.KeyName + "\" { capabilities = [\"" + c + "\"] }\n")
	}
	// Bootstrap's role has no default policy: keep the token's self paths,
	// as policy.hcl does, so only the Transit paths vary.
	b.WriteString(`path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
`)
	return b.String()
}

func writePolicy(t *testing.T, name, hcl string) {
	t.Helper()
	if err := devVault(t).RootClient().Sys().PutPolicyWithContext(apiserverCtx(t), name, hcl); err != nil {
		t.Fatal(err)
	}
}

// tokenAuth issues a token with policy and returns a token-file auth config.
func tokenAuth(t *testing.T, root *vaultapi.Client, policy string) config.VaultAuth {
	t.Helper()
	s, err := root.Auth().Token().CreateWithContext(apiserverCtx(t), &vaultapi.TokenCreateRequest{Policies: []string{policy}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	f := t.TempDir() + "/token"
	if err := os.WriteFile(f, []byte(s.Auth.ClientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.VaultAuth{Method: "token", Token: &config.TokenAuth{TokenFile: f}}
}

func counter(t *testing.T, g prometheus.Gatherer, name, result string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func histogramCount(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			return m.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func prefix(ct []byte) string {
	if len(ct) > 12 {
		return string(ct[:12])
	}
	return string(ct)
}
