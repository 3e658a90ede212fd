// Package transit is the kms.Provider backed by HashiCorp Vault's Transit
// secrets engine: it wraps DEK seeds with a named Transit key, pinned to the
// key version that Status reported.
package transit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/keyid"
	"github.com/trousseau-io/trousseau/plugin/kms"
	"github.com/trousseau-io/trousseau/plugin/vaultauth"
)

// Options carries the process-wide dependencies.
type Options struct {
	Logger *slog.Logger
	// Registerer receives the Vault metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Provider implements kms.Provider with Vault Transit.
type Provider struct {
	cfg  config.Vault
	auth *vaultauth.Authenticator
	log  *slog.Logger

	keyPath, encryptPath, decryptPath string
	// key derives the key_ids of the configured key, hashed once here
	// rather than on every Encrypt.
	key keyid.TransitKey
	// where names the key in every error, so an operator reading healthz
	// knows which Vault, mount and key is meant.
	where string

	duration   *prometheus.HistogramVec
	keyVersion prometheus.Gauge
}

var _ kms.Provider = (*Provider)(nil)

const (
	// One retry of 5xx/429/connection errors with short waits, so the retry
	// fits inside the apiserver's 3s KMS timeout.
	maxRetries   = 1
	minRetryWait = 50 * time.Millisecond
	maxRetryWait = 250 * time.Millisecond
)

// New builds the provider. It fails only on invalid configuration (bad
// address, unreadable TLS or credential files), never because Vault is
// down: the plugin must start and report the outage through Status.
func New(ctx context.Context, cfg config.Vault, opts Options) (*Provider, error) {
	cfg = withDefaults(cfg)
	u, err := url.Parse(cfg.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vault.address %q is not a URL such as https://vault.example:8200", cfg.Address)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("vault_address", cfg.Address, "transit_mount", cfg.TransitMount, "transit_key", cfg.KeyName)
	if cfg.TLS.InsecureSkipVerify {
		log.Warn("vault.tls.insecureSkipVerify is true: the Vault server certificate is NOT verified, " +
			"anyone on the network path can read every DEK seed; set tls.caFile instead")
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	auth, err := vaultauth.New(client, cfg.Auth, cfg.TLS, vaultauth.Options{Logger: log, Registerer: opts.Registerer})
	if err != nil {
		return nil, err
	}
	p := &Provider{
		cfg: cfg, auth: auth, log: log,
		keyPath:     cfg.TransitMount + "/keys/" + cfg.KeyName,
		encryptPath: cfg.TransitMount + "/encrypt/" + cfg.KeyName,
		decryptPath: cfg.TransitMount + "/decrypt/" + cfg.KeyName,
		key:         keyid.ForTransitKey(cfg.Address, cfg.Namespace, cfg.TransitMount, cfg.KeyName),
		where:       fmt.Sprintf("transit key %s at mount %s on %s", cfg.KeyName, cfg.TransitMount, cfg.Address),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trousseau_vault_request_duration_seconds",
			Help:    "Vault requests by operation and outcome (ok or the kms error kind).",
			Buckets: []float64{.0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 5},
		}, []string{"operation", "status"}),
		keyVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trousseau_key_version",
			Help: "Latest Transit key version seen by Status; encryption uses this version.",
		}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{p.duration, p.keyVersion} {
			if err := opts.Registerer.Register(c); err != nil {
				_ = auth.Close()
				return nil, fmt.Errorf("register Vault metrics: %w", err)
			}
		}
	}
	if cfg.Namespace != "" {
		p.where += " (namespace " + cfg.Namespace + ")"
	}
	return p, nil
}

// withDefaults fills what config.Load would have, for a cfg built in code.
func withDefaults(cfg config.Vault) config.Vault {
	if cfg.TransitMount == "" {
		cfg.TransitMount = config.DefaultTransitMount
	}
	cfg.TransitMount = strings.Trim(cfg.TransitMount, "/")
	if cfg.KeyName == "" {
		cfg.KeyName = config.DefaultKeyName
	}
	if cfg.RequestTimeout.Duration <= 0 {
		cfg.RequestTimeout.Duration = config.DefaultRequestTimeout
	}
	cfg.Address = strings.TrimRight(cfg.Address, "/")
	return cfg
}

// newClient configures the HTTP side explicitly, overriding any VAULT_*
// environment the process inherited: the plugin's configuration is the only
// source of truth, and a stray VAULT_SKIP_VERIFY must not weaken TLS.
func newClient(cfg config.Vault) (*vaultapi.Client, error) {
	c := vaultapi.DefaultConfig()
	c.Error = nil
	c.Address = cfg.Address
	c.AgentAddress = ""
	c.SRVLookup = false
	c.Timeout = cfg.RequestTimeout.Duration
	c.MaxRetries, c.MinRetryWait, c.MaxRetryWait = maxRetries, minRetryWait, maxRetryWait
	c.Limiter = nil
	if err := c.ConfigureTLS(&vaultapi.TLSConfig{
		CACert:        cfg.TLS.CAFile,
		ClientCert:    cfg.TLS.CertFile,
		ClientKey:     cfg.TLS.KeyFile,
		TLSServerName: cfg.TLS.ServerName,
		Insecure:      cfg.TLS.InsecureSkipVerify,
	}); err != nil {
		return nil, fmt.Errorf("vault.tls: %w: check caFile, certFile and keyFile point at readable PEM files", err)
	}
	client, err := vaultapi.NewClient(c)
	if err != nil {
		return nil, fmt.Errorf("build Vault client for %s: %w", cfg.Address, err)
	}
	client.ClearToken()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	} else {
		client.ClearNamespace()
	}
	return client, nil
}

// Name implements kms.Provider.
func (p *Provider) Name() string { return "vault-transit" }

// Close stops token renewal.
func (p *Provider) Close() error { return p.auth.Close() }

// CurrentKeyID reads the key's latest version and checks that the token may
// both encrypt and decrypt with it. A policy missing either is reported with
// the key_id, so Status can name the missing capability (field case 04).
func (p *Provider) CurrentKeyID(ctx context.Context) (string, error) {
	var key *vaultapi.Secret
	err := p.call(ctx, "read_key", func(ctx context.Context, c *vaultapi.Client) (err error) {
		key, err = c.Logical().ReadWithContext(ctx, p.keyPath)
		return err
	})
	if err != nil {
		return "", err
	}
	if key == nil {
		return "", kms.Errorf(kms.NotFound, "transit key %s not found at mount %s on %s: create it with `vault write -f %s/keys/%s` "+
			"(and, if the mount is missing too, `vault secrets enable -path=%s transit`)",
			p.cfg.KeyName, p.cfg.TransitMount, p.cfg.Address, p.cfg.TransitMount, p.cfg.KeyName, p.cfg.TransitMount)
	}
	n, ok := key.Data["latest_version"].(json.Number)
	v, convErr := n.Int64()
	if !ok || convErr != nil || v < 1 {
		return "", kms.Errorf(kms.Internal, "%s: Vault answered latest_version %v, want a positive number", p.where, key.Data["latest_version"])
	}
	p.keyVersion.Set(float64(v))
	return p.keyIDFor(int(v)), p.checkCapabilities(ctx)
}

func (p *Provider) checkCapabilities(ctx context.Context) error {
	var caps *vaultapi.Secret
	err := p.call(ctx, "capabilities", func(ctx context.Context, c *vaultapi.Client) (err error) {
		caps, err = c.Logical().WriteWithContext(ctx, "sys/capabilities-self",
			map[string]any{"paths": []string{p.encryptPath, p.decryptPath}})
		return err
	})
	if err != nil {
		return err // call's error already names the operation and the key
	}
	var missing []string
	for _, op := range []struct{ name, path string }{{"encrypt", p.encryptPath}, {"decrypt", p.decryptPath}} {
		if caps == nil || !allowsUpdate(caps.Data[op.path]) {
			missing = append(missing, op.name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var fix []string
	for _, op := range missing {
		fix = append(fix, fmt.Sprintf(`path "%s/%s/%s" { capabilities = ["update"] }`, p.cfg.TransitMount, op, p.cfg.KeyName))
	}
	return kms.Errorf(kms.PermissionDenied, "Vault policy denies %s on %s: add to the plugin's policy: %s",
		strings.Join(missing, " and "), p.where, strings.Join(fix, " "))
}

// denialFix says what to change after a 403 on op. The messages end up in
// healthz, so each names only the one path that op needs.
func (p *Provider) denialFix(op string) string {
	m, k := p.cfg.TransitMount, p.cfg.KeyName
	switch op {
	case "read_key":
		// A least-privilege policy covers only the configured key, so Vault
		// answers 403, not 404, for a misspelt or missing key or mount.
		return fmt.Sprintf("check provider.vault.keyName and transitMount (Vault also answers 403 for a key the policy does not cover, such as one that does not exist); if both are right, grant the policy read on %s/keys/%s", m, k)
	case "encrypt", "decrypt":
		return fmt.Sprintf("grant the policy update on %s/%s/%s", m, op, k)
	default:
		return fmt.Sprintf("grant the policy read on %s/keys/%s and update on %s/encrypt/%s and %s/decrypt/%s", m, k, m, k, m, k)
	}
}

func allowsUpdate(v any) bool {
	list, _ := v.([]any)
	for _, c := range list {
		if c == "update" || c == "root" {
			return true
		}
	}
	return false
}

// Encrypt wraps plaintext with exactly the key version that keyID names, so
// the key_id the apiserver gets back equals the one Status reported even
// while the key rotates (field case 14).
func (p *Provider) Encrypt(ctx context.Context, keyID string, plaintext []byte) ([]byte, error) {
	version, err := p.versionOf(keyID)
	if err != nil {
		return nil, err
	}
	var out *vaultapi.Secret
	err = p.call(ctx, "encrypt", func(ctx context.Context, c *vaultapi.Client) (err error) {
		out, err = c.Logical().WriteWithContext(ctx, p.encryptPath, map[string]any{
			"plaintext":   base64.StdEncoding.EncodeToString(plaintext),
			"key_version": version,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	var ct string
	if out != nil {
		ct, _ = out.Data["ciphertext"].(string)
	}
	want := "vault:v" + strconv.Itoa(version) + ":"
	if !strings.HasPrefix(ct, want) || len(ct) == len(want) {
		// Never hand the apiserver an empty or foreign ciphertext: it would
		// store it and the Secret would be unreadable.
		return nil, kms.Errorf(kms.Internal, "%s: Vault's encrypt answer holds no %s<data> ciphertext (got %d bytes)", p.where, want, len(ct))
	}
	return []byte(ct), nil
}

// Decrypt unwraps a ciphertext from Encrypt. Transit ciphertexts carry their
// key version, so keyID is not needed to pick the version.
func (p *Provider) Decrypt(ctx context.Context, keyID string, ciphertext []byte) ([]byte, error) {
	if !looksLikeTransit(ciphertext) {
		return nil, kms.Errorf(kms.InvalidInput, "ciphertext (%d bytes) is not a Vault Transit ciphertext (vault:v<N>:<base64>); it was not written by this provider", len(ciphertext))
	}
	var out *vaultapi.Secret
	err := p.call(ctx, "decrypt", func(ctx context.Context, c *vaultapi.Client) (err error) {
		out, err = c.Logical().WriteWithContext(ctx, p.decryptPath, map[string]any{"ciphertext": string(ciphertext)})
		return err
	})
	if err != nil {
		return nil, err
	}
	var b64 string
	ok := out != nil
	if ok {
		b64, ok = out.Data["plaintext"].(string)
	}
	pt, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || !ok {
		return nil, kms.Errorf(kms.Internal, "%s: Vault's decrypt answer holds no base64 plaintext", p.where)
	}
	return pt, nil
}

func (p *Provider) versionOf(keyID string) (int, error) {
	v, err := keyid.TransitVersion(keyID)
	if err != nil {
		return 0, kms.Errorf(kms.InvalidInput, "%v", err)
	}
	if keyID != p.keyIDFor(v) {
		return 0, kms.Errorf(kms.InvalidInput, "key_id %s was issued for another Vault address, namespace, mount or key than %s", keyID, p.where)
	}
	return v, nil
}

func (p *Provider) keyIDFor(version int) string {
	return p.key.ID(version)
}

// looksLikeTransit rejects garbage locally, so a corrupt etcd value costs no
// Vault round trip and cannot reach Vault's parser at all.
func looksLikeTransit(ct []byte) bool {
	rest, ok := strings.CutPrefix(string(ct), "vault:v")
	if !ok {
		return false
	}
	ver, data, ok := strings.Cut(rest, ":")
	if !ok || ver == "" || data == "" {
		return false
	}
	for _, c := range ver {
		if c < '0' || c > '9' {
			return false
		}
	}
	_, err := base64.StdEncoding.DecodeString(data)
	return err == nil
}

// call runs one Vault request through the authenticator, classifies its
// error and records its duration.
func (p *Provider) call(ctx context.Context, op string, fn func(context.Context, *vaultapi.Client) error) error {
	start := time.Now()
	err := p.auth.Do(ctx, fn)
	if err != nil {
		err = p.classify(ctx, op, err)
	}
	status := "ok"
	if err != nil {
		status = kms.KindOf(err).String()
	}
	p.duration.WithLabelValues(op, status).Observe(time.Since(start).Seconds())
	return err
}

// classify maps a Vault client error to the kms taxonomy. Messages quote
// only Vault's own error strings (vaultauth.VaultReason): a foreign body might
// echo the base64 DEK seed of an encrypt.
func (p *Provider) classify(ctx context.Context, op string, err error) error {
	var ke *kms.Error
	if errors.As(err, &ke) {
		return err
	}
	if ctx.Err() != nil {
		return kms.Errorf(kms.DeadlineExceeded, "%s on %s: the caller's deadline ran out before Vault answered: %v", op, p.where, ctx.Err())
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		switch {
		case re.StatusCode == 400 && (op == "decrypt" || op == "encrypt"):
			return kms.Errorf(kms.InvalidInput, "%s on %s rejected as invalid (HTTP 400): %s", op, p.where, vaultauth.VaultReason(re))
		case re.StatusCode == 401 || re.StatusCode == 403:
			return kms.Errorf(kms.PermissionDenied, "%s on %s denied (HTTP %d) to a valid token: %s", op, p.where, re.StatusCode, p.denialFix(op))
		case re.StatusCode == 404:
			return kms.Errorf(kms.NotFound, "%s on %s: not found (HTTP 404): check provider.vault.transitMount and keyName", op, p.where)
		case re.StatusCode == 412 || re.StatusCode == 429 || re.StatusCode >= 500:
			return kms.Errorf(kms.Unavailable, "%s on %s: Vault is unavailable (HTTP %d): %s", op, p.where, re.StatusCode, vaultauth.VaultReason(re))
		default:
			return kms.Errorf(kms.Internal, "%s on %s: unexpected Vault answer (HTTP %d): %s", op, p.where, re.StatusCode, vaultauth.VaultReason(re))
		}
	}
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &syntaxErr) || errors.As(err, &typeErr) {
		return kms.Errorf(kms.Internal, "%s on %s: Vault's answer is not the expected JSON: %v", op, p.where, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return kms.Errorf(kms.Unavailable, "%s on %s: Vault did not answer within vault.requestTimeout (%s)", op, p.where, p.cfg.RequestTimeout.Duration)
	}
	return kms.Errorf(kms.Unavailable, "%s on %s: cannot reach Vault: %v", op, p.where, err)
}
