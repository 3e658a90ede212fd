// Package vaultdev runs and prepares an in-memory development Vault for the
// tests and the local appliance: start `vault server -dev` on a free loopback
// port, enable Transit and AppRole with the least-privilege policy, and write
// the plugin's credentials to files.
//
// A dev Vault keeps everything in memory: stopping it loses the keys, and with
// them every Secret they encrypted.
package vaultdev

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/tools"
)

// Options configures Start.
type Options struct {
	// Dir receives vault.log and, with TLS, the generated CA and server
	// certificates. It must exist.
	Dir string
	// TLS serves HTTPS with a generated CA (vault -dev-tls); cert auth needs it.
	TLS bool
	// StartTimeout bounds the wait for a healthy Vault; 60s when zero.
	StartTimeout time.Duration
	// Detached, when set, lets Vault outlive the caller (the appliance's
	// `mage demo` exits while the stack keeps running; `mage down` stops it
	// by PID).
	Detached *Detached
}

// Detached runs Vault in its own session. No pipe survives the caller, so
// Vault writes its log itself (-log-file) and its console output, which
// carries the dev banner's root token, is discarded.
type Detached struct {
	// PIDFile receives Vault's pid.
	PIDFile string
	// RootTokenFile receives the root token (0600), so later commands can
	// reconnect to this Vault.
	RootTokenFile string
}

// Server is a running dev Vault.
type Server struct {
	// Addr is the base URL, e.g. http://127.0.0.1:41234.
	Addr string
	// CACertFile is the PEM CA that signed the server certificate (TLS only).
	CACertFile string
	// LogFile holds Vault's output with the root token redacted.
	LogFile string

	rootToken string
	root      *vaultapi.Client
	cmd       *exec.Cmd
	exited    chan struct{}
	stopOnce  sync.Once
}

// Start runs `vault server -dev` on a free 127.0.0.1 port and waits until it
// reports healthy. The root token is random, passed through the environment
// (never argv) and redacted from the log.
func Start(ctx context.Context, opts Options) (*Server, error) {
	// A free port found by probing can be taken by another process before
	// Vault binds it (or its cluster port, the next one). Vault then exits at
	// once; a fresh port on the next attempt fixes that.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var s *Server
		s, err = start(ctx, opts)
		if err == nil || !errors.Is(err, errExitedEarly) {
			return s, err
		}
	}
	return nil, err
}

// errExitedEarly marks a Vault that exited before it became healthy.
var errExitedEarly = errors.New("vault exited during startup")

func start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := tools.Vault.Path()
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("vaultdev: Options.Dir is empty: give a directory for vault.log")
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port for dev Vault: %w", err)
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"server", "-dev", "-dev-listen-address=" + listen, "-dev-no-store-token"}
	s := &Server{Addr: "http://" + listen, LogFile: filepath.Join(opts.Dir, "vault.log"), rootToken: token, exited: make(chan struct{})}
	if opts.TLS {
		certDir := filepath.Join(opts.Dir, "tls")
		if err := os.MkdirAll(certDir, 0o700); err != nil {
			return nil, fmt.Errorf("create dev Vault TLS directory: %w", err)
		}
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certDir)
		s.Addr = "https://" + listen
		s.CACertFile = filepath.Join(certDir, "vault-ca.pem")
	}

	if opts.Detached != nil {
		if err := startDetached(s, bin, args, token, opts); err != nil {
			return nil, err
		}
	} else if err := startAttached(s, bin, args, token, opts); err != nil {
		return nil, err
	}

	if err := s.waitHealthy(ctx, opts.StartTimeout); err != nil {
		s.Stop()
		return nil, fmt.Errorf("dev Vault did not become healthy on %s: %w\nlast lines of %s:\n%s\n"+
			"fix: check that %s runs (`%s version`) and that nothing else holds the port",
			s.Addr, err, s.LogFile, tail(s.LogFile, 15), bin, bin)
	}
	return s, nil
}

// startDetached starts Vault in its own session with its pid and root token
// written to files.
func startDetached(s *Server, bin string, args []string, token string, opts Options) error {
	if err := writeSecret(opts.Detached.RootTokenFile, token); err != nil {
		return fmt.Errorf("write the dev Vault root token file: %w", err)
	}
	cmd := exec.Command(bin, append(args, "-log-file="+s.LogFile)...)
	cmd.Env = append(cleanEnv(), "VAULT_DEV_ROOT_TOKEN_ID="+token, "HOME="+opts.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.cmd = cmd
	if err := os.WriteFile(opts.Detached.PIDFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("write the dev Vault pid file: %w", err)
	}
	// Reap it while the caller lives, so a crash is seen as an exit.
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// startAttached starts Vault tied to the caller, its output copied to the
// log with the root token redacted.
func startAttached(s *Server, bin string, args []string, token string, opts Options) error {
	logFile, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create dev Vault log: %w", err)
	}
	pr, pw := io.Pipe()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), "VAULT_DEV_ROOT_TOKEN_ID="+token, "HOME="+opts.Dir)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		copyRedacted(logFile, pr, token)
		_ = logFile.Close()
	}()
	if err := cmd.Start(); err != nil {
		_ = pw.Close()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.cmd = cmd
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
		<-copied
		close(s.exited)
	}()
	return nil
}

// RootClient returns a client authenticated with the root token. It is for
// setup in tests and the appliance; the plugin never gets it.
func (s *Server) RootClient() *vaultapi.Client {
	c, err := s.root.Clone()
	if err != nil {
		// Clone only fails on invalid configuration, which Start already built once.
		panic(fmt.Sprintf("vaultdev: clone root client: %v", err))
	}
	c.SetToken(s.rootToken)
	return c
}

func (s *Server) newClient() (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = s.Addr
	// A local dev server either answers or is not up yet; the health poll
	// does its own retrying.
	cfg.MaxRetries = 0
	if s.CACertFile != "" {
		if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACert: s.CACertFile}); err != nil {
			return nil, fmt.Errorf("load dev Vault CA %s: %w", s.CACertFile, err)
		}
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.ClearNamespace()
	return c, nil
}

// Stop terminates Vault's process group and waits for it to exit.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		pid := s.cmd.Process.Pid
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-s.exited
		}
	})
}

func (s *Server) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		// With -dev-tls the CA file appears only once Vault has generated it.
		if s.root == nil && (s.CACertFile == "" || fileExists(s.CACertFile)) {
			s.root, last = s.newClient()
		}
		if s.root != nil {
			var health *vaultapi.HealthResponse
			health, last = s.root.Sys().HealthWithContext(ctx)
			if last == nil && health.Initialized && !health.Sealed {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("no healthy answer within %s: %w", timeout, last)
		case <-s.exited:
			return fmt.Errorf("%w (%v)", errExitedEarly, s.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// copyRedacted copies Vault's output line by line so the dev banner's
// "Root Token:" never reaches the log.
func copyRedacted(w io.Writer, r io.Reader, secret string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		_, _ = io.WriteString(w, strings.ReplaceAll(sc.Text(), secret, "[redacted]")+"\n")
	}
	_, _ = io.Copy(io.Discard, r)
}

// cleanEnv drops VAULT_* variables of the caller so a developer's own Vault
// settings cannot leak into or reconfigure the dev server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate dev root token: %w", err)
	}
	// Not "hvs.": Vault reserves that prefix and rejects a dev root token
	// ID that uses it ("failed to create root token … invalid request").
	return "dev-root-" + hex.EncodeToString(b), nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return progress.Tail(string(b), n)
}
