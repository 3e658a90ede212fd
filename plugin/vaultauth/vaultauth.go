// Package vaultauth keeps a Vault client logged in for the plugin: it logs in
// with the configured method, renews the token, logs in again before the
// token's max TTL, and re-logs in once, single-flight, when Vault answers
// 401/403 (field cases 05, 08, 11).
//
// Authentication failures are returned as kms errors (PermissionDenied,
// Unavailable, NotFound); they never stop the process.
package vaultauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/kms"
)

// Options carries the process-wide dependencies.
type Options struct {
	Logger *slog.Logger
	// Registerer receives trousseau_vault_logins_total and
	// trousseau_vault_token_ttl_seconds; nil registers nothing.
	Registerer prometheus.Registerer
}

// Authenticator owns the token of one Vault client.
type Authenticator struct {
	client      *vaultapi.Client // carries the current token; shared by all calls
	loginClient *vaultapi.Client // never carries a token, so a stale one cannot spoil a login
	method      method
	log         *slog.Logger
	logins      *prometheus.CounterVec

	flight singleflight.Group
	ctx    context.Context // ends on Close; bounds logins and renewal
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	gen     uint64    // incremented by every successful login; 0 = never logged in
	expiry  time.Time // zero: the token does not expire
	watcher *vaultapi.LifetimeWatcher
}

// New prepares an Authenticator for client. It validates the auth
// configuration and reads the credential files once, but does not contact
// Vault: the plugin must start while Vault is down.
func New(client *vaultapi.Client, auth config.VaultAuth, tls config.VaultTLS, opts Options) (*Authenticator, error) {
	m, err := newMethod(auth, tls)
	if err != nil {
		return nil, err
	}
	loginClient, err := client.CloneWithHeaders()
	if err != nil {
		return nil, fmt.Errorf("prepare Vault login client: %w", err)
	}
	loginClient.ClearToken()
	client.ClearToken()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Authenticator{
		client: client, loginClient: loginClient, method: m, log: log.With("vault_auth", m.describe()),
		ctx: ctx, cancel: cancel,
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trousseau_vault_logins_total",
			Help: "Vault logins by result (success|failure).",
		}, []string{"result"}),
	}
	ttl := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "trousseau_vault_token_ttl_seconds",
		Help: "Seconds until the current Vault token expires; +Inf for a token without expiry, 0 before the first login.",
	}, a.ttlSeconds)
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{a.logins, ttl} {
			if err := opts.Registerer.Register(c); err != nil {
				cancel()
				return nil, fmt.Errorf("register Vault auth metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Do runs call with the logged-in client. If Vault answers 401 or 403
// because the token expired or was revoked, it logs in again (once for all
// concurrent callers) and retries exactly once. A 403 with a token that is
// still valid is the policy's answer: it is returned without a login, so a
// revoked permission does not mint a new token per request. call's own errors
// are returned unchanged for the caller to classify; login failures come back
// as kms errors.
func (a *Authenticator) Do(ctx context.Context, call func(context.Context, *vaultapi.Client) error) error {
	gen, err := a.ensureLoggedIn(ctx)
	if err != nil {
		return err
	}
	callErr := call(ctx, a.client)
	if !IsAuthError(callErr) {
		return callErr
	}
	switch err := a.relogin(ctx, gen, true); {
	case errors.Is(err, errTokenValid):
		return callErr
	case err != nil:
		return err
	}
	return call(ctx, a.client)
}

// errTokenValid means the current token still works, so a 403 came from policy.
var errTokenValid = errors.New("the current Vault token is still valid")

// IsAuthError reports a Vault answer that a fresh token may fix.
func IsAuthError(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden)
}

// Close stops renewal. The token is left to expire: revoking it could break
// another replica that shares a token file.
func (a *Authenticator) Close() error {
	a.cancel()
	a.mu.Lock()
	if a.watcher != nil {
		a.watcher.Stop()
	}
	a.mu.Unlock()
	a.wg.Wait()
	return nil
}

func (a *Authenticator) ensureLoggedIn(ctx context.Context) (uint64, error) {
	a.mu.Lock()
	gen, expiry := a.gen, a.expiry
	a.mu.Unlock()
	if gen > 0 && (expiry.IsZero() || time.Now().Before(expiry)) {
		return gen, nil
	}
	// errTokenValid (from a concurrent 403 check) proves the token works.
	if err := a.relogin(ctx, gen, false); err != nil && !errors.Is(err, errTokenValid) {
		return 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen, nil
}

// relogin logs in unless a login newer than seenGen already happened. All
// concurrent callers share one flight (field case 05); each waits only as
// long as its own ctx allows, while the flight runs to completion so the
// next caller benefits from it. With recheck, the flight first asks Vault
// whether the current token still works and returns errTokenValid if so.
// A caller that joins a flight started by the other kind gets that flight's
// result: errTokenValid tells a background re-login to try again shortly.
func (a *Authenticator) relogin(ctx context.Context, seenGen uint64, recheck bool) error {
	ch := a.flight.DoChan("login", func() (any, error) {
		a.mu.Lock()
		stale := a.gen != seenGen
		a.mu.Unlock()
		if stale {
			return nil, nil
		}
		if recheck && seenGen > 0 {
			if _, err := a.client.Auth().Token().LookupSelfWithContext(a.ctx); err == nil {
				return nil, errTokenValid
			}
		}
		return nil, a.login(a.ctx)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return kms.Errorf(kms.DeadlineExceeded, "Vault login (%s) at %s still running when the caller's deadline ran out: %v",
			a.method.describe(), a.client.Address(), ctx.Err())
	}
}

func (a *Authenticator) login(ctx context.Context) error {
	secret, err := a.method.login(ctx, a.loginClient)
	if err == nil && (secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "") {
		err = errors.New("Vault answered the login without a token")
	}
	if err != nil {
		a.logins.WithLabelValues("failure").Inc()
		err = a.classifyLogin(err)
		a.log.Warn("vault login failed", "err", err)
		return err
	}
	a.logins.WithLabelValues("success").Inc()
	ttl := time.Duration(secret.Auth.LeaseDuration) * time.Second

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx.Err() != nil {
		return kms.Errorf(kms.Unavailable, "Vault authenticator is closed")
	}
	a.gen++
	a.client.SetToken(secret.Auth.ClientToken)
	a.expiry = time.Time{}
	if ttl > 0 {
		a.expiry = time.Now().Add(ttl)
	}
	if a.watcher != nil {
		a.watcher.Stop()
		a.watcher = nil
	}
	a.log.Info("vault login succeeded", "ttl", ttl, "renewable", secret.Auth.Renewable)
	if ttl == 0 {
		return nil // nothing to renew, nothing expires
	}
	// Renewable or not, the watcher returns shortly before the token can no
	// longer be extended (max TTL, non-renewable, renew failures); the
	// goroutine then logs in again ahead of expiry (field case 08).
	w, err := a.client.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{Secret: secret})
	if err != nil {
		a.log.Warn("vault token renewal unavailable; re-login will happen on expiry", "err", err)
		return nil
	}
	a.watcher = w
	a.wg.Add(1)
	go a.watch(w, a.gen)
	return nil
}

func (a *Authenticator) watch(w *vaultapi.LifetimeWatcher, gen uint64) {
	defer a.wg.Done()
	go w.Start()
	for {
		select {
		case out := <-w.RenewCh():
			if out.Secret != nil && out.Secret.Auth != nil {
				a.mu.Lock()
				if a.gen == gen {
					a.expiry = time.Now().Add(time.Duration(out.Secret.Auth.LeaseDuration) * time.Second)
				}
				a.mu.Unlock()
			}
		case err := <-w.DoneCh():
			a.mu.Lock()
			superseded := a.gen != gen || a.ctx.Err() != nil
			a.mu.Unlock()
			if superseded {
				return
			}
			a.log.Info("vault token renewal ended; logging in again", "reason", errText(err))
			a.reloginUntilSuccess(gen)
			return
		}
	}
}

// reloginUntilSuccess keeps trying in the background so the token is
// replaced before it expires even when no request arrives.
func (a *Authenticator) reloginUntilSuccess(gen uint64) {
	backoff := 500 * time.Millisecond
	for {
		if a.relogin(a.ctx, gen, false) == nil {
			return
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (a *Authenticator) ttlSeconds() float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.gen == 0:
		return 0
	case a.expiry.IsZero():
		return math.Inf(1)
	default:
		return math.Max(0, time.Until(a.expiry).Seconds())
	}
}

// classifyLogin turns a login failure into a kms error that names the method,
// the address and the fix. Vault's own messages never echo the submitted
// secret; anything else is only measured (VaultReason).
func (a *Authenticator) classifyLogin(err error) error {
	what := fmt.Sprintf("Vault login (%s) at %s", a.method.describe(), a.client.Address())
	var re *vaultapi.ResponseError
	switch {
	case errors.As(err, &re) && (re.StatusCode == 429 || re.StatusCode >= 500):
		return kms.Errorf(kms.Unavailable, "%s: Vault is unavailable (HTTP %d): %s", what, re.StatusCode, VaultReason(re))
	case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
		return kms.Errorf(kms.NotFound, "%s: auth mount not found (HTTP 404): %s", what, mountFix(a.method))
	case errors.As(err, &re):
		return kms.Errorf(kms.PermissionDenied, "%s was refused (HTTP %d): %s: %s",
			what, re.StatusCode, VaultReason(re), refusalFix(a.method))
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return kms.Errorf(kms.Unavailable, "%s: no answer in time: %v", what, err)
	case errors.As(err, new(credentialError)):
		return kms.Errorf(kms.PermissionDenied, "%s: %v", what, err)
	default:
		return kms.Errorf(kms.Unavailable, "%s: cannot reach Vault: %v", what, err)
	}
}

// refusalFix names the settings to check when Vault refuses a login. These
// reasons reach healthz, so each says only what its method needs.
func refusalFix(m method) string {
	switch m := m.(type) {
	case tokenFile:
		return "write a current token into provider.vault.auth.token.tokenFile (" + m.path + ")"
	case appRole:
		return "check that provider.vault.auth.approle.roleIDFile and secretIDFile hold a current role_id and secret_id (secret_ids expire)"
	case kubernetes:
		return "check provider.vault.auth.kubernetes.role and that the Vault role binds this ServiceAccount"
	case cert:
		return "check that a Vault cert role trusts provider.vault.tls.certFile"
	default:
		return "check the credentials"
	}
}

// mountFix says how to repair an auth mount Vault does not know.
func mountFix(m method) string {
	switch m := m.(type) {
	case appRole:
		return fmt.Sprintf("run `vault auth enable -path=%s approle`, or correct provider.vault.auth.approle.mount", m.mount)
	case kubernetes:
		return fmt.Sprintf("run `vault auth enable -path=%s kubernetes`, or correct provider.vault.auth.kubernetes.mount", m.mount)
	case cert:
		return fmt.Sprintf("run `vault auth enable -path=%s cert`, or correct provider.vault.auth.cert.mount", m.mount)
	default:
		return "check provider.vault.address"
	}
}

func errText(err error) string {
	var re *vaultapi.ResponseError
	switch {
	case err == nil:
		return "token cannot be extended further"
	case errors.As(err, &re):
		return fmt.Sprintf("HTTP %d: %s", re.StatusCode, VaultReason(re))
	default:
		return err.Error()
	}
}

// VaultReason is what may be quoted from a failed Vault answer: Vault's JSON
// error strings, which never echo request data. A body in any other format
// (a proxy's page, or whatever answers at a wrong address, which may echo the
// request with its secret_id, JWT or DEK seed) is measured, never quoted.
func VaultReason(re *vaultapi.ResponseError) string {
	if !re.RawError {
		return strings.Join(re.Errors, "; ")
	}
	n := 0
	for _, e := range re.Errors {
		n += len(e)
	}
	return fmt.Sprintf("an answer of %d bytes that is not Vault's JSON error format, not quoted in case it echoes the request: check that provider.vault.address is Vault itself and no proxy rewrites its errors", n)
}
