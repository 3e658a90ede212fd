// Package config loads, merges and validates the trousseau configuration.
//
// Precedence, highest first: a command-line flag (--vault-address), a
// TROUSSEAU_* environment variable (TROUSSEAU_VAULT_ADDRESS), the YAML file
// (provider.vault.address), the built-in default. Every field has all three
// forms, generated from one table in load.go. Credentials are never values:
// the config, its flags and its variables only name files (field case 10),
// which the provider reads with package secretfile.
//
// Decoding is strict: an unknown or misspelt key is an error naming it.
// Check, the one entry point of serve and check-config, also validates the
// result and reads every credential and TLS file it names, and reports every
// problem it finds at once.
package config

import (
	"fmt"
	"time"
)

// Config is the whole plugin configuration. Its YAML form (camelCase keys) is
// what the Helm chart renders and what the local runtime runs, so the chart's
// config is the tested config.
type Config struct {
	// Socket is where the KMS v2 gRPC server listens.
	Socket Socket `json:"socket"`
	// Ops is the HTTP listener for /livez, /readyz and /metrics.
	Ops Ops `json:"ops"`
	// Log selects the log format and level.
	Log Log `json:"log"`
	// Status tunes the background key status refresh.
	Status Status `json:"status"`
	// Provider holds exactly one provider stanza.
	Provider Provider `json:"provider"`
}

// Socket is the unix socket the apiserver dials.
type Socket struct {
	// Path is an absolute path, e.g. /var/run/trousseau/kms.sock.
	Path string `json:"path"`
	// Mode is the octal permission of the socket file, "0600" by default.
	Mode string `json:"mode"`
	// ShutdownGrace bounds how long in-flight calls may drain on SIGTERM.
	ShutdownGrace Duration `json:"shutdownGrace"`
}

// Ops is the operations HTTP endpoint.
type Ops struct {
	// Address is host:port, "127.0.0.1:8787" by default. Readiness and
	// metrics depend on it, so it cannot be disabled.
	Address string `json:"address"`
}

// Log configures slog.
type Log struct {
	Format string `json:"format"` // json | text
	Level  string `json:"level"`  // debug | info | warn | error
}

// Status configures the cache that serves the Status RPC.
type Status struct {
	// RefreshInterval is how often the backend is asked for the key while
	// healthy. While unhealthy the loop retries faster (a fifth of it, at least 2s).
	RefreshInterval Duration `json:"refreshInterval"`
}

// Provider selects the KMS. Exactly one field is set. A new KMS adds a field
// here and a package under plugin/; the server does not change.
type Provider struct {
	Vault *Vault `json:"vault,omitempty"`
}

// Vault configures the Vault Transit provider.
type Vault struct {
	// Address is the Vault URL, e.g. https://vault.vault.svc:8200.
	Address string `json:"address"`
	// Namespace is the Vault Enterprise namespace, empty for none.
	Namespace string `json:"namespace,omitempty"`
	// TransitMount is the Transit secrets engine mount path, "transit" by default.
	TransitMount string `json:"transitMount"`
	// KeyName is the Transit key, "kubernetes" by default.
	KeyName string `json:"keyName"`
	// RequestTimeout bounds one Vault HTTP request, retries included. It must
	// stay below the apiserver's KMS timeout (3s by default).
	RequestTimeout Duration  `json:"requestTimeout"`
	TLS            VaultTLS  `json:"tls"`
	Auth           VaultAuth `json:"auth"`
}

// VaultTLS configures TLS to Vault. Paths only; contents are read from files.
type VaultTLS struct {
	CAFile             string `json:"caFile,omitempty"`
	CertFile           string `json:"certFile,omitempty"`
	KeyFile            string `json:"keyFile,omitempty"`
	ServerName         string `json:"serverName,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// VaultAuth selects one auth method. Secrets are only ever file paths.
type VaultAuth struct {
	// Method is token | approle | kubernetes | cert.
	Method     string          `json:"method"`
	Token      *TokenAuth      `json:"token,omitempty"`
	AppRole    *AppRoleAuth    `json:"approle,omitempty"`
	Kubernetes *KubernetesAuth `json:"kubernetes,omitempty"`
	Cert       *CertAuth       `json:"cert,omitempty"`
}

// TokenAuth reads a Vault token from a file, re-read when the file changes.
type TokenAuth struct {
	TokenFile string `json:"tokenFile"`
}

// AppRoleAuth logs in with a role_id and a secret_id file.
type AppRoleAuth struct {
	Mount        string `json:"mount"` // "approle" by default
	RoleIDFile   string `json:"roleIDFile"`
	SecretIDFile string `json:"secretIDFile"`
}

// KubernetesAuth logs in with a projected ServiceAccount token.
type KubernetesAuth struct {
	Mount     string `json:"mount"` // "kubernetes" by default
	Role      string `json:"role"`
	TokenFile string `json:"tokenFile"` // projected SA token path
}

// CertAuth logs in with the TLS client certificate from VaultTLS.
type CertAuth struct {
	Mount string `json:"mount"` // "cert" by default
	Name  string `json:"name,omitempty"`
}

// Duration is a time.Duration that reads and writes as "3s" in YAML.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + d.String() + `"`), nil
}

// UnmarshalJSON reads a Go duration string such as "3s" or "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return fmt.Errorf("duration must be a quoted string such as \"3s\", got %s", s)
	}
	v, err := time.ParseDuration(s[1 : len(s)-1])
	if err != nil {
		return fmt.Errorf("invalid duration %s: use a value such as \"3s\" or \"1m\"", s)
	}
	d.Duration = v
	return nil
}
