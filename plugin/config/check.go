package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/trousseau-io/trousseau/plugin/secretfile"
)

// EnvConfig names the config file when --config is not given.
const EnvConfig = EnvPrefix + "CONFIG"

// errNoConfig is returned when no source defines a provider at all, which
// is a missing --config far more often than a deliberate choice.
var errNoConfig = errors.New("no configuration given: pass --config FILE or set " + EnvConfig + " (or provide every setting as flags/env)")

// toolingEnv lists the TROUSSEAU_* variables that the repository's build,
// test and appliance tooling reads. The plugin ignores them, so a developer
// shell that exports them can still run it; any other unknown TROUSSEAU_*
// variable is a typo.
var toolingEnv = []string{"TROUSSEAU_RUNTIME", "TROUSSEAU_TOOLS_DIR", "TROUSSEAU_VERSION",
	"TROUSSEAU_VAULT_BIN", "TROUSSEAU_ETCD_BIN", "TROUSSEAU_KUBE_APISERVER_BIN",
	"TROUSSEAU_KIND_NODE_IMAGE", "TROUSSEAU_KIND_CONTROL_PLANES", "TROUSSEAU_KIND_VAULT_MODE",
	"TROUSSEAU_E2E_KEEP_ON_FAILURE"}

// Check is what serve and check-config run: it loads the configuration from
// the file at path (or $TROUSSEAU_CONFIG), the environment and the flags,
// validates it and checks every file it names. It reports every problem it
// can find at once, each naming the key and the fix.
func Check(path string, environ []string, flags *Flags) (Config, error) {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if path == "" {
		path = env[EnvConfig]
	}
	errs := unknownEnv(env)
	c, parseErrs, err := load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, flags)
	if err != nil {
		return Config{}, errors.Join(append(errs, err)...)
	}
	errs = append(errs, parseErrs...)
	if path == "" && c.Provider.Vault == nil {
		return Config{}, errors.Join(append(errs, errNoConfig)...)
	}
	// Validate what parsed, but stay quiet about keys already reported: a
	// value of the wrong type was dropped and would read as "missing".
	for _, e := range c.problems() {
		if !mentionsAny(e, parseErrs) {
			errs = append(errs, e)
		}
	}
	errs = append(errs, c.checkFiles()...)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// mentionsAny reports whether e is about a key that one of errs names first.
func mentionsAny(e error, errs []error) bool {
	for _, pe := range errs {
		var ke keyError
		if errors.As(pe, &ke) {
			msg := e.Error()
			if strings.HasPrefix(msg, ke.key+":") || strings.HasPrefix(msg, ke.key+".") {
				return true
			}
		}
	}
	return false
}

// keyError is a problem with one YAML key.
type keyError struct{ key, msg string }

func (e keyError) Error() string { return e.key + ": " + e.msg }

func unknownEnv(env map[string]string) []error {
	known := []string{EnvConfig}
	for _, f := range fields {
		known = append(known, f.env())
	}
	var names []string
	for k := range env {
		if strings.HasPrefix(k, EnvPrefix) && !slices.Contains(known, k) && !slices.Contains(toolingEnv, k) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var errs []error
	for _, k := range names {
		best := closest(k, known)
		hint := "see `trousseau serve --help` for every variable"
		if distance(k, best) <= 3 {
			hint = "did you mean " + best + "?"
		}
		errs = append(errs, fmt.Errorf("environment variable %s is not a trousseau setting: %s (unset it if it is not meant for the plugin)", k, hint))
	}
	return errs
}

func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := distance(s, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein edit distance.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// examples are shown in type errors, so the fix can be copied.
var examples = map[string]string{
	"socket.mode":                   `"` + DefaultSocketMode + `"`,
	"socket.shutdownGrace":          `"` + DefaultShutdownGrace.String() + `"`,
	"status.refreshInterval":        `"` + DefaultRefreshInterval.String() + `"`,
	"provider.vault.requestTimeout": `"` + DefaultRequestTimeout.String() + `"`,
	"ops.address":                   `"` + DefaultOpsAddress + `"`,
}

var durationType = reflect.TypeOf(Duration{})

// checkTypes walks the decoded YAML alongside the Config type and reports
// every value of the wrong type by its full key, in words an operator knows
// (Go's decoder would say "cannot unmarshal number into Go struct field
// Socket.socket.mode of type string"). Bad values are deleted from m so the
// strict decode that follows still fills everything else.
func checkTypes(m map[string]any, t reflect.Type, prefix string) []error {
	var errs []error
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		v, ok := m[name]
		if !ok || v == nil {
			continue
		}
		key := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		var msg string
		switch {
		case ft == durationType:
			msg = checkDuration(key, v)
		case ft.Kind() == reflect.Struct:
			sub, isMap := v.(map[string]any)
			if !isMap {
				msg = "must be a mapping of nested keys, got " + describe(v)
				break
			}
			errs = append(errs, checkTypes(sub, ft, key+".")...)
		case ft.Kind() == reflect.String:
			if _, isStr := v.(string); !isStr {
				msg = "must be a string"
				if ex, ok := examples[key]; ok {
					msg += " such as " + ex
				}
				msg += " (quote it in YAML), got " + describe(v)
			}
		case ft.Kind() == reflect.Bool:
			if _, isBool := v.(bool); !isBool {
				msg = "must be true or false, got " + describe(v)
			}
		}
		if msg != "" {
			errs = append(errs, keyError{key, msg})
			delete(m, name)
		}
	}
	return errs
}

// checkDuration accepts a positive Go duration string. Zero is rejected,
// not read as "use the default": a config that says 0s means something the
// plugin cannot do, and leaving the key out already gives the default.
func checkDuration(key string, v any) string {
	ex := examples[key]
	s, ok := v.(string)
	if !ok {
		return fmt.Sprintf("must be a duration string such as %s, got %s (a duration needs a unit)", ex, describe(v))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Sprintf("invalid duration %q: use a value such as %s", s, ex)
	}
	if d <= 0 {
		return fmt.Sprintf("must be positive, got %q: use a value such as %s, or leave the key out for the default", s, ex)
	}
	return ""
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case bool:
		return fmt.Sprintf("the boolean %t", v)
	case json.Number, float64:
		return "a number"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// checkFiles reads every credential and TLS file the configuration names,
// the way the provider will, so check-config fails on exactly what serve
// would fail on. Relative paths are left to Validate.
//
// The projected ServiceAccount token (kubernetes auth) must exist too: the
// kubelet mounts projected volumes before the container starts, so a
// missing file at check time means a wrong path, not a race; and operators
// run check-config where the plugin runs.
func (c Config) checkFiles() []error {
	v := c.Provider.Vault
	if v == nil {
		return nil
	}
	var errs []error
	secret := func(key, path string) {
		if filepath.IsAbs(path) {
			if _, err := secretfile.Read(path); err != nil {
				errs = append(errs, fmt.Errorf("provider.vault.%s: %w", key, err))
			}
		}
	}
	switch a := v.Auth; a.Method {
	case "token":
		secret("auth.token.tokenFile", a.Token.TokenFile)
	case "approle":
		secret("auth.approle.roleIDFile", a.AppRole.RoleIDFile)
		secret("auth.approle.secretIDFile", a.AppRole.SecretIDFile)
	case "kubernetes":
		secret("auth.kubernetes.tokenFile", a.Kubernetes.TokenFile)
	}
	pemFile := func(key, path string) []byte {
		if !filepath.IsAbs(path) {
			return nil
		}
		b, err := secretfile.Bytes(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("provider.vault.tls.%s: %w", key, err))
		}
		return b
	}
	if ca := pemFile("caFile", v.TLS.CAFile); ca != nil && !x509.NewCertPool().AppendCertsFromPEM(ca) {
		errs = append(errs, fmt.Errorf("provider.vault.tls.caFile: %s holds no PEM certificate: point it at the CA certificate (-----BEGIN CERTIFICATE-----) that signed Vault's certificate", v.TLS.CAFile))
	}
	cert, key := pemFile("certFile", v.TLS.CertFile), pemFile("keyFile", v.TLS.KeyFile)
	if cert != nil && !hasPEM(cert, "CERTIFICATE") {
		errs = append(errs, fmt.Errorf("provider.vault.tls.certFile: %s holds no PEM certificate: point it at the client certificate (-----BEGIN CERTIFICATE-----)", v.TLS.CertFile))
		cert = nil
	}
	if key != nil && !hasPEM(key, "PRIVATE KEY") {
		errs = append(errs, fmt.Errorf("provider.vault.tls.keyFile: %s holds no PEM private key: point it at the client certificate's key (-----BEGIN ... PRIVATE KEY-----)", v.TLS.KeyFile))
		key = nil
	}
	if cert != nil && key != nil {
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			errs = append(errs, fmt.Errorf("provider.vault.tls.keyFile: %s and certFile %s are not a usable pair (%v): use the key that belongs to the certificate", v.TLS.KeyFile, v.TLS.CertFile, err))
		}
	}
	return errs
}

// hasPEM reports a PEM block whose type ends with suffix.
func hasPEM(b []byte, suffix string) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if strings.HasSuffix(block.Type, suffix) {
			return true
		}
	}
}
