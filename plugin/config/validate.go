package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes including the terminating NUL).
const maxSocketPath = 107

// maxSocketDir leaves room for where server.Listen binds the socket before
// linking it into place: <dir>/.<up to 10 digits>/s.
const maxSocketDir = maxSocketPath - len("/.4294967295/s")

// minRefreshInterval keeps the status loop from hammering the backend.
const minRefreshInterval = time.Second

// FileMode parses Mode ("0600") as permission bits.
func (s Socket) FileMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(s.Mode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("socket.mode: %q is not octal permissions: use a value such as \"0600\"", s.Mode)
	}
	return os.FileMode(m), nil
}

// Validate reports every problem at once; each error names the field and the
// fix. It reads no files; Check does.
func (c Config) Validate() error {
	return errors.Join(c.problems()...)
}

func (c Config) problems() []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}

	switch p := c.Socket.Path; {
	case !filepath.IsAbs(p):
		add("socket.path", "must be an absolute path such as %s, got %q", controlplane.SocketPath(), p)
	case len(p) > maxSocketPath:
		add("socket.path", "is %d bytes, longer than the %d a unix socket path may have: choose a shorter path", len(p), maxSocketPath)
	case len(filepath.Dir(p)) > maxSocketDir:
		add("socket.path", "is in a directory of %d bytes; the plugin binds the socket in a private subdirectory there first, so the directory may have at most %d: choose a shorter directory", len(filepath.Dir(p)), maxSocketDir)
	}
	if m, err := c.Socket.FileMode(); err != nil {
		errs = append(errs, err)
	} else if m&0o600 != 0o600 {
		add("socket.mode", "%04o does not let the owner read and write the socket: use \"0600\"", m)
	} else if m&0o007 != 0 {
		// Whoever can connect can ask the plugin to decrypt every DEK seed,
		// so "other" access hands every local user every Secret.
		add("socket.mode", "%04o lets every local user connect and decrypt Secrets: use \"0600\", or \"0660\" with a group shared with kube-apiserver", m)
	}
	if c.Socket.ShutdownGrace.Duration <= 0 {
		add("socket.shutdownGrace", "must be positive, such as \"5s\"")
	}
	if host, port, err := net.SplitHostPort(c.Ops.Address); err != nil || port == "" {
		add("ops.address", "must be host:port such as 127.0.0.1:8787, got %q", c.Ops.Address)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		add("ops.address", "port %q of %q is not a number from 0 to 65535", port, host+":"+port)
	}
	if f := c.Log.Format; f != "json" && f != "text" {
		add("log.format", "must be json or text, got %q", f)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if d := c.Status.RefreshInterval.Duration; d < minRefreshInterval {
		add("status.refreshInterval", "must be at least %s so the backend is not hammered, got %s; %s is a good value", minRefreshInterval, d, DefaultRefreshInterval)
	}

	if c.Provider.Vault == nil {
		add("provider", "exactly one provider stanza is required: add provider.vault")
	} else {
		errs = append(errs, c.Provider.Vault.validate()...)
	}
	return errs
}

func (v *Vault) validate() []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("provider.vault.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(v.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("address", "must be an http(s) URL such as https://vault:8200, got %q", v.Address)
	}
	if strings.Trim(v.TransitMount, "/") == "" {
		add("transitMount", "must not be empty: use %s", DefaultTransitMount)
	}
	if v.KeyName == "" {
		add("keyName", "must not be empty: use %s", DefaultKeyName)
	}
	if strings.Contains(v.KeyName, "/") {
		add("keyName", "%q must be a bare Transit key name without '/'", v.KeyName)
	}
	if d := v.RequestTimeout.Duration; d <= 0 || d >= controlplane.KMSTimeout {
		add("requestTimeout", "must be positive and below the apiserver's KMS timeout of %s (so an error arrives before the apiserver gives up), got %s; use %s", controlplane.KMSTimeout, d, DefaultRequestTimeout)
	}
	// The plugin's working directory depends on how it was started (static
	// pod, systemd, a shell), so a relative path would point somewhere else.
	absolute := func(key, path string) {
		if path != "" && !filepath.IsAbs(path) {
			add(key, "%q must be an absolute path such as /etc/trousseau/%s", path, filepath.Base(path))
		}
	}
	absolute("tls.caFile", v.TLS.CAFile)
	absolute("tls.certFile", v.TLS.CertFile)
	absolute("tls.keyFile", v.TLS.KeyFile)
	if a := v.Auth.Token; a != nil {
		absolute("auth.token.tokenFile", a.TokenFile)
	}
	if a := v.Auth.AppRole; a != nil {
		absolute("auth.approle.roleIDFile", a.RoleIDFile)
		absolute("auth.approle.secretIDFile", a.SecretIDFile)
	}
	if a := v.Auth.Kubernetes; a != nil {
		absolute("auth.kubernetes.tokenFile", a.TokenFile)
	}
	if (v.TLS.CertFile == "") != (v.TLS.KeyFile == "") {
		add("tls", "certFile and keyFile go together: set both or neither")
	}

	a := v.Auth
	stanzas := []struct {
		name string
		set  bool
	}{{"token", a.Token != nil}, {"approle", a.AppRole != nil}, {"kubernetes", a.Kubernetes != nil}, {"cert", a.Cert != nil}}
	known := false
	for _, st := range stanzas {
		known = known || st.name == a.Method
		if st.set && st.name != a.Method {
			add("auth."+st.name, "is set but auth.method is %q: remove it, or set auth.method to %s", a.Method, st.name)
		}
	}
	if !known {
		add("auth.method", "must be token, approle, kubernetes or cert, got %q", a.Method)
	}
	required := func(key, val, what string) {
		if val == "" {
			add("auth."+key, "is required for auth method %s: set it to %s", a.Method, what)
		}
	}
	switch a.Method {
	case "token":
		required("token.tokenFile", a.Token.TokenFile, "the file holding the Vault token")
	case "approle":
		required("approle.mount", a.AppRole.Mount, "the AppRole mount, usually "+DefaultAppRoleMount)
		required("approle.roleIDFile", a.AppRole.RoleIDFile, "the file holding the role_id")
		required("approle.secretIDFile", a.AppRole.SecretIDFile, "the file holding the secret_id")
	case "kubernetes":
		required("kubernetes.mount", a.Kubernetes.Mount, "the Kubernetes auth mount, usually "+DefaultKubernetesMount)
		required("kubernetes.role", a.Kubernetes.Role, "the Vault role bound to the plugin's ServiceAccount")
		required("kubernetes.tokenFile", a.Kubernetes.TokenFile, "the projected ServiceAccount token file")
	case "cert":
		required("cert.mount", a.Cert.Mount, "the cert auth mount, usually "+DefaultCertMount)
		if v.TLS.CertFile == "" {
			add("tls.certFile", "is required for auth method cert: set tls.certFile and tls.keyFile to the client certificate and key")
		}
		if !strings.HasPrefix(v.Address, "https://") {
			add("address", "must use https:// for auth method cert: the client certificate is presented during TLS")
		}
	}
	return errs
}

// Warnings lists settings that are valid but dangerous, for loud logs.
func (c Config) Warnings() []string {
	var w []string
	if v := c.Provider.Vault; v != nil && v.TLS.InsecureSkipVerify {
		w = append(w, "provider.vault.tls.insecureSkipVerify is true: Vault's certificate is NOT verified and anyone on the network path can read every DEK seed; set provider.vault.tls.caFile instead")
	}
	return w
}
