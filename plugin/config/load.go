package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
)

// EnvPrefix starts every environment variable that sets a field.
const EnvPrefix = "TROUSSEAU_"

// Precedence documents how sources combine, for --help and docs.
const Precedence = "Each setting comes from, highest first: a command-line flag, a " + EnvPrefix + "* environment variable, the --config file, the built-in default. Flags and variables that name credentials take FILE PATHS, never secret values."

// Defaults for fields left empty by every source.
const (
	DefaultSocketMode      = "0600"
	DefaultShutdownGrace   = 5 * time.Second
	DefaultOpsAddress      = "127.0.0.1:8787"
	DefaultLogFormat       = "json"
	DefaultLogLevel        = "info"
	DefaultRefreshInterval = 20 * time.Second
	DefaultTransitMount    = "transit"
	DefaultKeyName         = "kubernetes"
	DefaultRequestTimeout  = 2 * time.Second
	DefaultAppRoleMount    = "approle"
	DefaultKubernetesMount = "kubernetes"
	DefaultCertMount       = "cert"
)

// field binds one config value to a flag and an environment variable, so the
// three sources cannot drift apart.
type field struct {
	flag   string // without "--"; the variable is EnvPrefix + FLAG_IN_CAPS
	key    string // the YAML key, for help and errors
	usage  string
	isBool bool
	set    func(c *Config, v string) error
}

// Env is the environment variable that sets the field.
func (f field) env() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.flag, "-", "_"))
}

// ensure returns *p, allocating it first, so a flag or default can fill one
// field of an optional stanza.
func ensure[T any](p **T) *T {
	if *p == nil {
		*p = new(T)
	}
	return *p
}

func vault(c *Config) *Vault                   { return ensure(&c.Provider.Vault) }
func tokenAuth(c *Config) *TokenAuth           { return ensure(&vault(c).Auth.Token) }
func appRole(c *Config) *AppRoleAuth           { return ensure(&vault(c).Auth.AppRole) }
func kubernetesAuth(c *Config) *KubernetesAuth { return ensure(&vault(c).Auth.Kubernetes) }
func certAuth(c *Config) *CertAuth             { return ensure(&vault(c).Auth.Cert) }

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("invalid duration %q: use a value such as \"3s\" or \"1m\"", v)
		}
		if d <= 0 {
			return fmt.Errorf("duration %q must be positive: use a value such as \"3s\", or unset it for the default", v)
		}
		p(c).Duration = d
		return nil
	}
}

// fields lists every setting. Credentials appear only as *-file paths
// (field case 10): no flag or variable carries a secret value.
var fields = []field{
	{flag: "socket-path", key: "socket.path", usage: "absolute path of the KMS v2 unix socket (default " + controlplane.SocketPath() + ")", set: str(func(c *Config) *string { return &c.Socket.Path })},
	{flag: "socket-mode", key: "socket.mode", usage: "octal permissions of the socket file (default " + DefaultSocketMode + ")", set: str(func(c *Config) *string { return &c.Socket.Mode })},
	{flag: "socket-shutdown-grace", key: "socket.shutdownGrace", usage: "how long in-flight calls may drain on SIGTERM (default " + DefaultShutdownGrace.String() + ")", set: dur(func(c *Config) *Duration { return &c.Socket.ShutdownGrace })},
	{flag: "ops-address", key: "ops.address", usage: "host:port for /livez, /readyz and /metrics (default " + DefaultOpsAddress + ")", set: str(func(c *Config) *string { return &c.Ops.Address })},
	{flag: "log-format", key: "log.format", usage: "json or text (default " + DefaultLogFormat + ")", set: str(func(c *Config) *string { return &c.Log.Format })},
	{flag: "log-level", key: "log.level", usage: "debug, info, warn or error (default " + DefaultLogLevel + ")", set: str(func(c *Config) *string { return &c.Log.Level })},
	{flag: "status-refresh-interval", key: "status.refreshInterval", usage: "how often the key status is refreshed while healthy (default " + DefaultRefreshInterval.String() + ")", set: dur(func(c *Config) *Duration { return &c.Status.RefreshInterval })},
	{flag: "vault-address", key: "provider.vault.address", usage: "Vault URL, e.g. https://vault:8200", set: str(func(c *Config) *string { return &vault(c).Address })},
	{flag: "vault-namespace", key: "provider.vault.namespace", usage: "Vault Enterprise namespace", set: str(func(c *Config) *string { return &vault(c).Namespace })},
	{flag: "vault-transit-mount", key: "provider.vault.transitMount", usage: "Transit secrets engine mount (default " + DefaultTransitMount + ")", set: str(func(c *Config) *string { return &vault(c).TransitMount })},
	{flag: "vault-key-name", key: "provider.vault.keyName", usage: "Transit key name (default " + DefaultKeyName + ")", set: str(func(c *Config) *string { return &vault(c).KeyName })},
	{flag: "vault-request-timeout", key: "provider.vault.requestTimeout", usage: "bound on one Vault request, below the 3s KMS timeout (default " + DefaultRequestTimeout.String() + ")", set: dur(func(c *Config) *Duration { return &vault(c).RequestTimeout })},
	{flag: "vault-tls-ca-file", key: "provider.vault.tls.caFile", usage: "PEM file of the CA that signed Vault's certificate", set: str(func(c *Config) *string { return &vault(c).TLS.CAFile })},
	{flag: "vault-tls-cert-file", key: "provider.vault.tls.certFile", usage: "PEM client certificate file (cert auth)", set: str(func(c *Config) *string { return &vault(c).TLS.CertFile })},
	{flag: "vault-tls-key-file", key: "provider.vault.tls.keyFile", usage: "PEM client key file (cert auth)", set: str(func(c *Config) *string { return &vault(c).TLS.KeyFile })},
	{flag: "vault-tls-server-name", key: "provider.vault.tls.serverName", usage: "TLS server name to verify instead of the address host", set: str(func(c *Config) *string { return &vault(c).TLS.ServerName })},
	{flag: "vault-tls-insecure-skip-verify", key: "provider.vault.tls.insecureSkipVerify", usage: "DANGEROUS: do not verify Vault's certificate", isBool: true, set: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid boolean %q: use true or false", v)
		}
		vault(c).TLS.InsecureSkipVerify = b
		return nil
	}},
	{flag: "vault-auth-method", key: "provider.vault.auth.method", usage: "token, approle, kubernetes or cert", set: str(func(c *Config) *string { return &vault(c).Auth.Method })},
	{flag: "vault-auth-token-file", key: "provider.vault.auth.token.tokenFile", usage: "file holding a Vault token", set: str(func(c *Config) *string { return &tokenAuth(c).TokenFile })},
	{flag: "vault-auth-approle-mount", key: "provider.vault.auth.approle.mount", usage: "AppRole auth mount (default " + DefaultAppRoleMount + ")", set: str(func(c *Config) *string { return &appRole(c).Mount })},
	{flag: "vault-auth-approle-role-id-file", key: "provider.vault.auth.approle.roleIDFile", usage: "file holding the AppRole role_id", set: str(func(c *Config) *string { return &appRole(c).RoleIDFile })},
	{flag: "vault-auth-approle-secret-id-file", key: "provider.vault.auth.approle.secretIDFile", usage: "file holding the AppRole secret_id", set: str(func(c *Config) *string { return &appRole(c).SecretIDFile })},
	{flag: "vault-auth-kubernetes-mount", key: "provider.vault.auth.kubernetes.mount", usage: "Kubernetes auth mount (default " + DefaultKubernetesMount + ")", set: str(func(c *Config) *string { return &kubernetesAuth(c).Mount })},
	{flag: "vault-auth-kubernetes-role", key: "provider.vault.auth.kubernetes.role", usage: "Vault role for Kubernetes auth", set: str(func(c *Config) *string { return &kubernetesAuth(c).Role })},
	{flag: "vault-auth-kubernetes-token-file", key: "provider.vault.auth.kubernetes.tokenFile", usage: "projected ServiceAccount token file", set: str(func(c *Config) *string { return &kubernetesAuth(c).TokenFile })},
	{flag: "vault-auth-cert-mount", key: "provider.vault.auth.cert.mount", usage: "TLS certificate auth mount (default " + DefaultCertMount + ")", set: str(func(c *Config) *string { return &certAuth(c).Mount })},
	{flag: "vault-auth-cert-name", key: "provider.vault.auth.cert.name", usage: "certificate role name for cert auth", set: str(func(c *Config) *string { return &certAuth(c).Name })},
}

// Flags holds the values of the per-field flags registered on a FlagSet.
type Flags struct {
	values []*flagValue
}

type flagValue struct {
	f   field
	val string
	set bool
}

func (v *flagValue) String() string   { return v.val }
func (v *flagValue) IsBoolFlag() bool { return v.f.isBool }
func (v *flagValue) Set(s string) error {
	// Check now so a typo fails at parse time, naming the flag.
	if err := v.f.set(&Config{}, s); err != nil {
		return err
	}
	v.val, v.set = s, true
	return nil
}

// RegisterFlags adds one flag per config field to fs. Each flag's help names
// its environment variable and YAML key.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	fl := &Flags{}
	for _, f := range fields {
		v := &flagValue{f: f}
		fl.values = append(fl.values, v)
		fs.Var(v, f.flag, fmt.Sprintf("%s\nenv %s, file key %s", f.usage, f.env(), f.key))
	}
	return fl
}

// Load builds the configuration from the YAML file at path (optional: ""
// skips it), then the environment through lookupEnv (nil skips it), then
// flags (nil skips them), then fills defaults. It does not validate; call
// Validate, or Check to also validate and check the files it names.
func Load(path string, lookupEnv func(string) (string, bool), flags *Flags) (Config, error) {
	c, parseErrs, err := load(path, lookupEnv, flags)
	if err != nil {
		return Config{}, err
	}
	if len(parseErrs) > 0 {
		return Config{}, errors.Join(parseErrs...)
	}
	return c, nil
}

// load is Load that keeps going past bad values: parseErrs lists every
// unknown key and every value of the wrong type (from the file, the
// environment or a flag), and c holds everything else. err is set only when
// nothing sensible can be read (no file, invalid YAML).
func load(path string, lookupEnv func(string) (string, bool), flags *Flags) (c Config, parseErrs []error, err error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return Config{}, nil, fmt.Errorf("config file %s does not exist: pass the path of an existing file to --config", path)
		}
		if err != nil {
			return Config{}, nil, fmt.Errorf("read config file %s: %w", path, err)
		}
		errs, err := decodeStrict(b, &c)
		if err != nil {
			return Config{}, nil, fmt.Errorf("config file %s: %w", path, err)
		}
		for _, e := range errs {
			parseErrs = append(parseErrs, fmt.Errorf("config file %s: %w", path, e))
		}
	}
	if lookupEnv != nil {
		for _, f := range fields {
			v, ok := lookupEnv(f.env())
			if !ok {
				continue
			}
			if err := f.set(&c, v); err != nil {
				parseErrs = append(parseErrs, fmt.Errorf("environment variable %s (%s): %w", f.env(), f.key, err))
			}
		}
	}
	if flags != nil {
		for _, v := range flags.values {
			if !v.set {
				continue
			}
			if err := v.f.set(&c, v.val); err != nil {
				parseErrs = append(parseErrs, fmt.Errorf("flag --%s (%s): %w", v.f.flag, v.f.key, err))
			}
		}
	}
	applyDefaults(&c)
	return c, parseErrs, nil
}

// decodeStrict decodes b into c and returns every unknown or duplicate key
// and every value of the wrong type, each by its full path ("socket.moed");
// err is set only for YAML that cannot be read at all. It goes through
// sigs.k8s.io/json rather than yaml.UnmarshalStrict because that names the
// full path of a misspelt key, not just its last part.
func decodeStrict(b []byte, c *Config) (problems []error, err error) {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w: fix this first; more errors may follow", err)
	}
	if len(bytes.TrimSpace(j)) == 0 || string(j) == "null" {
		return nil, nil
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("the file must be a mapping of keys such as socket: and provider:, not a list or a single value")
	}
	problems = checkTypes(m, reflect.TypeOf(Config{}), "")
	if j, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("re-encode the configuration: %w", err)
	}
	strictErrs, err := sigsjson.UnmarshalStrict(j, c, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		// checkTypes removed every value of a type it knows to be wrong.
		problems = append(problems, err)
	}
	for _, e := range strictErrs {
		hint := "check the key's spelling, case and nesting against the documented example"
		var fe sigsjson.FieldError
		if errors.As(e, &fe) && strings.HasPrefix(e.Error(), "unknown field") {
			if best := closest(fe.FieldPath(), knownKeys()); distance(fe.FieldPath(), best) <= 3 {
				hint = "did you mean " + best + "?"
			}
		}
		problems = append(problems, fmt.Errorf("%w: %s", e, hint))
	}
	return problems, nil
}

// knownKeys lists every YAML key path, leaves and the mappings above them.
func knownKeys() []string {
	var keys []string
	for _, f := range fields {
		parts := strings.Split(f.key, ".")
		for i := range parts {
			if k := strings.Join(parts[:i+1], "."); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

func applyDefaults(c *Config) {
	setStr := func(p *string, d string) {
		if *p == "" {
			*p = d
		}
	}
	setDur := func(p *Duration, d time.Duration) {
		if p.Duration == 0 {
			p.Duration = d
		}
	}
	setStr(&c.Socket.Path, controlplane.SocketPath())
	setStr(&c.Socket.Mode, DefaultSocketMode)
	setDur(&c.Socket.ShutdownGrace, DefaultShutdownGrace)
	setStr(&c.Ops.Address, DefaultOpsAddress)
	setStr(&c.Log.Format, DefaultLogFormat)
	setStr(&c.Log.Level, DefaultLogLevel)
	setDur(&c.Status.RefreshInterval, DefaultRefreshInterval)
	v := c.Provider.Vault
	if v == nil {
		return
	}
	setStr(&v.TransitMount, DefaultTransitMount)
	setStr(&v.KeyName, DefaultKeyName)
	setDur(&v.RequestTimeout, DefaultRequestTimeout)
	// The chosen method's stanza exists even if only defaults fill it
	// (cert needs nothing else), and Validate can name its missing fields.
	switch v.Auth.Method {
	case "token":
		tokenAuth(c)
	case "approle":
		appRole(c)
	case "kubernetes":
		kubernetesAuth(c)
	case "cert":
		certAuth(c)
	}
	if a := v.Auth.AppRole; a != nil {
		setStr(&a.Mount, DefaultAppRoleMount)
	}
	if a := v.Auth.Kubernetes; a != nil {
		setStr(&a.Mount, DefaultKubernetesMount)
	}
	if a := v.Auth.Cert; a != nil {
		setStr(&a.Mount, DefaultCertMount)
	}
}
