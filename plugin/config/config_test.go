package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
)

// exampleConfig is the documented example from the project brief.
const exampleConfig = `
socket: {path: /var/run/trousseau/kms.sock, mode: "0600", shutdownGrace: 5s}
ops: {address: "127.0.0.1:8787"}
log: {format: json, level: info}
status: {refreshInterval: 20s}
provider:
  vault:
    address: https://vault.example:8200
    namespace: ""
    transitMount: transit
    keyName: kubernetes
    requestTimeout: 2s
    tls: {caFile: /etc/trousseau/vault-ca.pem, serverName: "", insecureSkipVerify: false}
    auth:
      method: approle
      approle: {mount: approle, roleIDFile: /etc/trousseau/role-id, secretIDFile: /etc/trousseau/secret-id}
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trousseau.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDocumentedExampleLoadsAndValidates(t *testing.T) {
	c, err := Load(writeConfig(t, exampleConfig), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("documented example does not validate: %v", err)
	}
	v := c.Provider.Vault
	if v.Address != "https://vault.example:8200" || v.Auth.AppRole.SecretIDFile != "/etc/trousseau/secret-id" || v.RequestTimeout.Duration != 2*time.Second {
		t.Fatalf("example decoded wrongly: %+v", v)
	}
}

func TestDefaultsFillWhatNoSourceSets(t *testing.T) {
	path := writeConfig(t, `
provider:
  vault:
    address: https://vault:8200
    auth:
      method: approle
      approle: {roleIDFile: /r, secretIDFile: /s}
`)
	c, err := Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	v := c.Provider.Vault
	checks := []struct{ name, got, want string }{
		{"socket.path", c.Socket.Path, controlplane.SocketPath()},
		{"socket.mode", c.Socket.Mode, "0600"},
		{"socket.shutdownGrace", c.Socket.ShutdownGrace.String(), "5s"},
		{"ops.address", c.Ops.Address, "127.0.0.1:8787"},
		{"log.format", c.Log.Format, "json"},
		{"log.level", c.Log.Level, "info"},
		{"status.refreshInterval", c.Status.RefreshInterval.String(), "20s"},
		{"transitMount", v.TransitMount, "transit"},
		{"keyName", v.KeyName, "kubernetes"},
		{"requestTimeout", v.RequestTimeout.String(), "2s"},
		{"approle.mount", v.Auth.AppRole.Mount, "approle"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want default %q", ch.name, ch.got, ch.want)
		}
	}
	for method, mount := range map[string]func(*Vault) string{
		"kubernetes": func(v *Vault) string { return v.Auth.Kubernetes.Mount },
		"cert":       func(v *Vault) string { return v.Auth.Cert.Mount },
	} {
		c, err := Load("", env(map[string]string{"TROUSSEAU_VAULT_ADDRESS": "https://v:8200", "TROUSSEAU_VAULT_AUTH_METHOD": method}), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := mount(c.Provider.Vault); got != method {
			t.Errorf("%s auth mount = %q, want default %q", method, got, method)
		}
	}
}

func TestFlagsBeatEnvironmentBeatsFileBeatsDefaults(t *testing.T) {
	path := writeConfig(t, `
log: {level: warn, format: text}
ops: {address: "127.0.0.1:9000"}
provider:
  vault:
    address: https://from-file:8200
    keyName: from-file
    auth: {method: token, token: {tokenFile: /file/token}}
`)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl := RegisterFlags(fs)
	if err := fs.Parse([]string{"--vault-address=https://from-flag:8200", "--log-level=debug"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, env(map[string]string{
		"TROUSSEAU_VAULT_ADDRESS":         "https://from-env:8200",
		"TROUSSEAU_VAULT_KEY_NAME":        "from-env",
		"TROUSSEAU_VAULT_AUTH_TOKEN_FILE": "/env/token",
	}), fl)
	if err != nil {
		t.Fatal(err)
	}
	v := c.Provider.Vault
	checks := []struct{ what, got, want string }{
		{"flag over env and file", v.Address, "https://from-flag:8200"},
		{"flag over file", c.Log.Level, "debug"},
		{"env over file", v.KeyName, "from-env"},
		{"env over file (file path)", v.Auth.Token.TokenFile, "/env/token"},
		{"file over default", c.Log.Format, "text"},
		{"file over default", c.Ops.Address, "127.0.0.1:9000"},
		{"default", v.TransitMount, "transit"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %q, want %q", ch.what, ch.got, ch.want)
		}
	}
}

func TestEnvironmentAloneCanConfigureTheProvider(t *testing.T) {
	c, err := Load("", env(map[string]string{
		"TROUSSEAU_VAULT_ADDRESS":                     "http://127.0.0.1:8200",
		"TROUSSEAU_VAULT_AUTH_METHOD":                 "approle",
		"TROUSSEAU_VAULT_AUTH_APPROLE_ROLE_ID_FILE":   "/run/role-id",
		"TROUSSEAU_VAULT_AUTH_APPROLE_SECRET_ID_FILE": "/run/secret-id",
		"TROUSSEAU_VAULT_TLS_INSECURE_SKIP_VERIFY":    "false",
		"TROUSSEAU_SOCKET_SHUTDOWN_GRACE":             "1s",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Socket.ShutdownGrace.Duration != time.Second || c.Provider.Vault.Auth.AppRole.RoleIDFile != "/run/role-id" {
		t.Fatalf("environment not applied: %+v", c)
	}
}

func TestLoadErrorsNameTheSource(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{name: "unknown key", file: "socket: {path: /a.sock, moed: \"0600\"}\n", wantErr: `unknown field "socket.moed": did you mean socket.mode?`},
		{name: "miscased key", file: "provider: {vault: {keyname: k}}\n", wantErr: `unknown field "provider.vault.keyname": did you mean provider.vault.keyName?`},
		{name: "unknown provider", file: "provider: {awskms: {}}\n", wantErr: `unknown field "provider.awskms": check the key's spelling`},
		{name: "unquoted number as duration", file: "status: {refreshInterval: 20}\n", wantErr: `status.refreshInterval: must be a duration string such as "20s", got a number`},
		{name: "word as duration", file: "provider: {vault: {requestTimeout: two}}\n", wantErr: `provider.vault.requestTimeout: invalid duration "two": use a value such as "2s"`},
		{name: "zero duration in file", file: "status: {refreshInterval: 0s}\n", wantErr: `status.refreshInterval: must be positive, got "0s"`},
		{name: "negative duration in file", file: "socket: {shutdownGrace: -1s}\n", wantErr: `socket.shutdownGrace: must be positive, got "-1s"`},
		{name: "zero duration in env", env: map[string]string{"TROUSSEAU_STATUS_REFRESH_INTERVAL": "0s"}, wantErr: `TROUSSEAU_STATUS_REFRESH_INTERVAL (status.refreshInterval): duration "0s" must be positive`},
		{name: "unquoted socket mode", file: "socket: {mode: 0600}\n", wantErr: `socket.mode: must be a string such as "0600" (quote it in YAML), got a number`},
		{name: "string as bool", file: "provider: {vault: {tls: {insecureSkipVerify: \"no\"}}}\n", wantErr: `provider.vault.tls.insecureSkipVerify: must be true or false, got the string "no"`},
		{name: "scalar where a mapping goes", file: "provider: {vault: {tls: /etc/ca.pem}}\n", wantErr: `provider.vault.tls: must be a mapping of nested keys, got the string "/etc/ca.pem"`},
		{name: "list as file", file: "- socket\n", wantErr: "the file must be a mapping of keys"},
		{name: "bad duration in env", env: map[string]string{"TROUSSEAU_STATUS_REFRESH_INTERVAL": "soon"}, wantErr: "environment variable TROUSSEAU_STATUS_REFRESH_INTERVAL (status.refreshInterval): invalid duration"},
		{name: "bad bool in env", env: map[string]string{"TROUSSEAU_VAULT_TLS_INSECURE_SKIP_VERIFY": "yes please"}, wantErr: "TROUSSEAU_VAULT_TLS_INSECURE_SKIP_VERIFY"},
		{name: "bad duration flag", args: []string{"--vault-request-timeout=2"}, wantErr: "invalid duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeConfig(t, tc.file)
			}
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(&strings.Builder{})
			fl := RegisterFlags(fs)
			err := fs.Parse(tc.args)
			if err == nil {
				_, err = Load(path, env(tc.env), fl)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "Go struct") || strings.Contains(err.Error(), "json:") {
				t.Fatalf("error leaks decoder internals: %v", err)
			}
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "missing.yaml does not exist") {
		t.Fatalf("missing file error = %v", err)
	}
}

func TestValidateNamesTheFieldAndTheFix(t *testing.T) {
	base := func() Config {
		c, err := Load(writeConfig(t, exampleConfig), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string
	}{
		{"relative socket path", func(c *Config) { c.Socket.Path = "run/kms.sock" }, "socket.path: must be an absolute path such as /var/run/trousseau/kms.sock"},
		{"socket path too long", func(c *Config) { c.Socket.Path = "/" + strings.Repeat("a", 120) }, "socket.path: is 121 bytes"},
		{"socket directory too long to bind in first", func(c *Config) { c.Socket.Path = "/" + strings.Repeat("a", 93) + "/kms.sock" }, "socket.path: is in a directory of 94 bytes"},
		{"socket mode not octal", func(c *Config) { c.Socket.Mode = "rw-------" }, `socket.mode: "rw-------" is not octal`},
		{"socket mode locks out the owner", func(c *Config) { c.Socket.Mode = "0400" }, "socket.mode: 0400 does not let the owner read and write"},
		{"socket mode 0777", func(c *Config) { c.Socket.Mode = "0777" }, `socket.mode: 0777 lets every local user connect and decrypt Secrets: use "0600", or "0660" with a group shared with kube-apiserver`},
		{"socket mode 0666", func(c *Config) { c.Socket.Mode = "0666" }, "socket.mode: 0666 lets every local user connect"},
		{"socket mode 777 without leading zero", func(c *Config) { c.Socket.Mode = "777" }, "socket.mode: 0777 lets every local user connect"},
		{"socket mode readable by others", func(c *Config) { c.Socket.Mode = "0604" }, "socket.mode: 0604 lets every local user connect"},
		{"relative secret-id file", func(c *Config) { c.Provider.Vault.Auth.AppRole.SecretIDFile = "secret-id" }, `provider.vault.auth.approle.secretIDFile: "secret-id" must be an absolute path`},
		{"relative CA file", func(c *Config) { c.Provider.Vault.TLS.CAFile = "./ca.pem" }, `provider.vault.tls.caFile: "./ca.pem" must be an absolute path`},
		{"no grace", func(c *Config) { c.Socket.ShutdownGrace.Duration = 0 }, "socket.shutdownGrace: must be positive"},
		{"ops address without port", func(c *Config) { c.Ops.Address = "localhost" }, "ops.address: must be host:port"},
		{"ops port not a number", func(c *Config) { c.Ops.Address = "localhost:http" }, "ops.address: port \"http\""},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format: must be json or text"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level: must be debug, info, warn or error"},
		{"refresh too fast", func(c *Config) { c.Status.RefreshInterval.Duration = 100 * time.Millisecond }, "status.refreshInterval: must be at least 1s"},
		{"no provider", func(c *Config) { c.Provider.Vault = nil }, "provider: exactly one provider stanza is required: add provider.vault"},
		{"vault address without scheme", func(c *Config) { c.Provider.Vault.Address = "vault:8200" }, "provider.vault.address: must be an http(s) URL such as https://vault:8200"},
		{"vault address with stray quote", func(c *Config) { c.Provider.Vault.Address = `"https://vault:8200"` }, "provider.vault.address: must be an http(s) URL"},
		{"key name with slash", func(c *Config) { c.Provider.Vault.KeyName = "a/b" }, "provider.vault.keyName: \"a/b\" must be a bare Transit key name"},
		{"request timeout at the KMS timeout", func(c *Config) { c.Provider.Vault.RequestTimeout.Duration = 3 * time.Second }, "provider.vault.requestTimeout: must be positive and below the apiserver's KMS timeout of 3s"},
		{"cert without key", func(c *Config) { c.Provider.Vault.TLS.CertFile = "/c.pem" }, "provider.vault.tls: certFile and keyFile go together"},
		{"unknown auth method", func(c *Config) { c.Provider.Vault.Auth.Method = "userpass" }, "provider.vault.auth.method: must be token, approle, kubernetes or cert, got \"userpass\""},
		{"stanza of another method", func(c *Config) { c.Provider.Vault.Auth.Token = &TokenAuth{TokenFile: "/t"} }, "provider.vault.auth.token: is set but auth.method is \"approle\""},
		{"approle without secret id file", func(c *Config) { c.Provider.Vault.Auth.AppRole.SecretIDFile = "" }, "provider.vault.auth.approle.secretIDFile: is required for auth method approle"},
		{"token without file", func(c *Config) {
			c.Provider.Vault.Auth = VaultAuth{Method: "token", Token: &TokenAuth{}}
		}, "provider.vault.auth.token.tokenFile: is required for auth method token"},
		{"kubernetes without role", func(c *Config) {
			c.Provider.Vault.Auth = VaultAuth{Method: "kubernetes", Kubernetes: &KubernetesAuth{Mount: "kubernetes", TokenFile: "/t"}}
		}, "provider.vault.auth.kubernetes.role: is required"},
		{"cert without client certificate", func(c *Config) {
			c.Provider.Vault.Auth = VaultAuth{Method: "cert", Cert: &CertAuth{Mount: "cert"}}
		}, "provider.vault.tls.certFile: is required for auth method cert"},
		{"cert over http", func(c *Config) {
			c.Provider.Vault.Address = "http://vault:8200"
			c.Provider.Vault.TLS.CertFile, c.Provider.Vault.TLS.KeyFile = "/c", "/k"
			c.Provider.Vault.Auth = VaultAuth{Method: "cert", Cert: &CertAuth{Mount: "cert"}}
		}, "provider.vault.address: must use https:// for auth method cert"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v\nwant it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	c, err := Load(writeConfig(t, "log: {level: loud}\nsocket: {path: rel.sock}\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	for _, want := range []string{"socket.path", "log.level", "provider:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestInsecureSkipVerifyIsValidButWarned(t *testing.T) {
	c, err := Load(writeConfig(t, exampleConfig), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("safe config has warnings: %v", w)
	}
	c.Provider.Vault.TLS.InsecureSkipVerify = true
	if err := c.Validate(); err != nil {
		t.Fatalf("insecureSkipVerify must be allowed: %v", err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "NOT verified") {
		t.Fatalf("Warnings() = %v, want one loud warning", w)
	}
}

func TestFieldCase10NoFlagOrVariableTakesASecretValue(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	RegisterFlags(fs)
	secretWords := []string{"token", "secret", "password", "role-id", "key"}
	fs.VisitAll(func(f *flag.Flag) {
		for _, w := range secretWords {
			if strings.Contains(f.Name, w) && !strings.HasSuffix(f.Name, "-file") && f.Name != "vault-key-name" {
				t.Errorf("flag --%s looks like it takes a secret value; credentials must be given as *-file paths", f.Name)
			}
		}
	})
	if fs.Lookup("vault-auth-token-file") == nil || fs.Lookup("vault-auth-approle-secret-id-file") == nil {
		t.Fatal("credential file flags are missing")
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	for _, content := range []string{"", "\n# only a comment\n"} {
		c, err := Load(writeConfig(t, content), nil, nil)
		if err != nil {
			t.Fatalf("Load(%q): %v", content, err)
		}
		if c.Socket.Path != controlplane.SocketPath() || c.Provider.Vault != nil {
			t.Fatalf("Load(%q) = %+v, want defaults and no provider", content, c)
		}
	}
}

func TestGroupSocketModeIsAccepted(t *testing.T) {
	for _, mode := range []string{"0600", "0660", "600", "0700"} {
		c, err := Load(writeConfig(t, exampleConfig), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Socket.Mode = mode
		if err := c.Validate(); err != nil {
			t.Errorf("socket.mode %s: %v", mode, err)
		}
	}
}
