package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"github.com/trousseau-io/trousseau/plugin/internal/logbuf"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/internal/fakevault"
)

// plugin is one `trousseau serve` run inside the test process, with the real
// provider factory.
type plugin struct {
	socket string
	logs   *logbuf.Buffer
	cancel context.CancelFunc
	done   chan error
	client kmsservice.Service
}

// shortDir returns a directory whose socket paths fit the unix limit.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "trc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServe runs serve with configYAML plus flags that put the socket in
// dir and the ops endpoint on a free port, and waits until the socket
// accepts.
func startServe(t testing.TB, dir, configYAML string, extraArgs ...string) *plugin {
	t.Helper()
	p := &plugin{socket: filepath.Join(dir, "kms.sock"), logs: &logbuf.Buffer{}, done: make(chan error, 1)}
	cfgPath := writeFile(t, filepath.Join(dir, "trousseau.yaml"), configYAML)
	args := append([]string{"--config", cfgPath, "--socket-path", p.socket, "--ops-address", "127.0.0.1:0",
		"--log-level", "debug", "--status-refresh-interval", "1s"}, extraArgs...)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- serve(ctx, args, p.logs, buildProvider) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s")
		}
	})
	eventually(t, 5*time.Second, "the socket to accept", func() bool {
		c, err := net.Dial("unix", p.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	cctx, ccancel := context.WithCancel(context.Background())
	t.Cleanup(ccancel)
	client, err := kmsv2.NewGRPCService(cctx, "unix://"+p.socket, "trousseau", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p.client = client
	return p
}

var opsAddrRE = regexp.MustCompile(`"ops":"(127\.0\.0\.1:\d+)"`)

// opsURL reads the bound ops address from the startup log line.
func (p *plugin) opsURL(t testing.TB) string {
	t.Helper()
	m := opsAddrRE.FindStringSubmatch(p.logs.String())
	if m == nil {
		t.Fatalf("startup log has no ops address:\n%s", p.logs.String())
	}
	return "http://" + m[1]
}

func (p *plugin) status(t testing.TB) *kmsservice.StatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := p.client.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return st
}

func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func leakForms(secret []byte) map[string]string {
	return map[string]string{
		"raw":        string(secret),
		"base64":     base64.StdEncoding.EncodeToString(secret),
		"base64 raw": base64.RawStdEncoding.EncodeToString(secret),
		"base64 url": base64.URLEncoding.EncodeToString(secret),
		"hex":        hex.EncodeToString(secret),
	}
}

// TestFieldCase10NoCredentialOrSeedEverReachesTheLogs runs serve with the
// real Vault Transit provider (against the fault-injecting fake Vault),
// credentials in files, debug logging, and a full Status/Encrypt/Decrypt
// cycle through the apiserver's own client, then greps everything logged.
func TestFieldCase10NoCredentialOrSeedEverReachesTheLogs(t *testing.T) {
	cases := []struct {
		method  string
		secrets []string
		stanza  func(dir string) string
		prepare func(fv *fakevault.Server)
	}{
		{
			method:  "token",
			secrets: []string{"hvs.CAESIJk9xTokenFromFile"},
			stanza: func(dir string) string {
				return fmt.Sprintf("token: {tokenFile: %s}", writeFile(t, filepath.Join(dir, "token"), "hvs.CAESIJk9xTokenFromFile\n"))
			},
			prepare: func(fv *fakevault.Server) { fv.AddToken("hvs.CAESIJk9xTokenFromFile") },
		},
		{
			method: "approle",
			// fake-token-1 is the token the fake Vault issues at login.
			secrets: []string{"5c1e0b7a-secret-id-from-file", "fake-token-1"},
			stanza: func(dir string) string {
				return fmt.Sprintf("approle: {roleIDFile: %s, secretIDFile: %s}",
					writeFile(t, filepath.Join(dir, "role-id"), "role-id-from-file\n"),
					writeFile(t, filepath.Join(dir, "secret-id"), "5c1e0b7a-secret-id-from-file\r\n"))
			},
			prepare: func(*fakevault.Server) {},
		},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			fv := fakevault.New(t)
			tc.prepare(fv)
			dir := shortDir(t)
			p := startServe(t, dir, fmt.Sprintf(`
provider:
  vault:
    address: %s
    auth:
      method: %s
      %s
`, fv.URL, tc.method, tc.stanza(dir)))

			eventually(t, 5*time.Second, "healthy Status", func() bool { return p.status(t).Healthz == "ok" })
			st := p.status(t)
			seed := make([]byte, 32)
			if _, err := rand.Read(seed); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			enc, err := p.client.Encrypt(ctx, "uid-enc-0001", seed)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if enc.KeyID != st.KeyID {
				t.Fatalf("Encrypt key_id %q != Status key_id %q", enc.KeyID, st.KeyID)
			}
			got, err := p.client.Decrypt(ctx, "uid-dec-0001", &kmsservice.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: enc.KeyID, Annotations: enc.Annotations})
			if err != nil || !bytes.Equal(got, seed) {
				t.Fatalf("Decrypt = %x, %v; want the seed back", got, err)
			}
			// A failing call is logged with its error: a proxy's non-JSON page
			// echoing the request (and so this seed) must not be quoted in it.
			echoed := make([]byte, 32)
			if _, err := rand.Read(echoed); err != nil {
				t.Fatal(err)
			}
			fv.Inject("/v1/transit/encrypt/kubernetes", fakevault.Fault{Status: 502, Times: 2,
				Body: "<html>Bad Gateway: upstream rejected {\"plaintext\":\"" + base64.StdEncoding.EncodeToString(echoed) + "\"}</html>"})
			if _, err := p.client.Encrypt(ctx, "uid-enc-0002", echoed); err == nil {
				t.Fatal("Encrypt through a failing proxy succeeded")
			}
			if code, body := httpGet(t, p.opsURL(t)+"/metrics"); code != 200 || !strings.Contains(body, `trousseau_rpc_duration_seconds_count{code="OK",method="Encrypt"} 1`) {
				t.Fatalf("/metrics = %d, lacks the Encrypt series:\n%s", code, body)
			}
			p.cancel()
			if err := <-p.done; err != nil {
				t.Fatalf("serve: %v", err)
			}
			p.done <- nil

			logs := p.logs.String()
			if !strings.Contains(logs, "uid-enc-0001") || !strings.Contains(logs, "uid-dec-0001") {
				t.Fatalf("debug logs should carry the request uids; the grep below would prove nothing:\n%s", logs)
			}
			for _, secret := range tc.secrets {
				for form, s := range leakForms([]byte(secret)) {
					if strings.Contains(logs, s) {
						t.Errorf("logs contain credential %q (%s form)", secret, form)
					}
				}
			}
			if !strings.Contains(logs, "not Vault's JSON error format") {
				t.Errorf("the failed Encrypt's error is not in the logs; the grep below proves nothing for it:\n%s", logs)
			}
			for _, sd := range [][]byte{seed, echoed} {
				for form, s := range leakForms(sd) {
					if strings.Contains(logs, s) {
						t.Errorf("logs contain a seed (%s form)", form)
					}
				}
			}
		})
	}
}

func TestFieldCase10NoFlagTakesASecretValue(t *testing.T) {
	fs, _, _ := newFlagSet("serve", io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		lower := strings.ToLower(f.Name)
		for _, w := range []string{"token", "secret", "password", "role-id"} {
			if strings.Contains(lower, w) && !strings.HasSuffix(lower, "-file") {
				t.Errorf("flag --%s would put a credential in the process list; take a -file path instead", f.Name)
			}
		}
	})
}

func TestFieldCase11BadListenAddressFailsAtStartupWithExitCode1(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := shortDir(t)
	notADir := writeFile(t, filepath.Join(dir, "file"), "x")
	cfg := writeFile(t, filepath.Join(dir, "trousseau.yaml"), `
provider:
  vault:
    address: http://127.0.0.1:1
    auth: {method: token, token: {tokenFile: `+writeFile(t, filepath.Join(dir, "token"), "t")+`}}
`)
	sock := filepath.Join(dir, "kms.sock")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"ops port in use", []string{"--socket-path", sock, "--ops-address", busy.Addr().String()}, "ops.address: bind ops address " + busy.Addr().String()},
		{"ops port out of range", []string{"--socket-path", sock, "--ops-address", "127.0.0.1:99999"}, "ops.address: port \"99999\""},
		{"socket under a file", []string{"--socket-path", filepath.Join(notADir, "kms.sock"), "--ops-address", "127.0.0.1:0"}, "socket.path: create socket directory"},
		{"relative socket", []string{"--socket-path", "kms.sock", "--ops-address", "127.0.0.1:0"}, "socket.path: must be an absolute path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			done := make(chan int, 1)
			go func() {
				done <- run(context.Background(), append([]string{"serve", "--config", cfg}, tc.args...), io.Discard, &stderr)
			}()
			select {
			case code := <-done:
				if code != 1 {
					t.Fatalf("exit code %d, want 1; stderr:\n%s", code, stderr.String())
				}
			case <-time.After(10 * time.Second):
				t.Fatal("serve kept running with a bad listen address")
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr does not say %q:\n%s", tc.want, stderr.String())
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Fatalf("a failed start left the socket %s behind", sock)
			}
		})
	}
}

func TestFieldCase11RejectedCredentialsNeverStopTheProcess(t *testing.T) {
	fv := fakevault.New(t) // knows no token: every request is "permission denied"
	dir := shortDir(t)
	p := startServe(t, dir, fmt.Sprintf(`
provider:
  vault:
    address: %s
    auth: {method: token, token: {tokenFile: %s}}
`, fv.URL, writeFile(t, filepath.Join(dir, "token"), "hvs.revoked\n")))

	eventually(t, 5*time.Second, "Status to report the denial", func() bool {
		return strings.Contains(strings.ToLower(p.status(t).Healthz), "permission denied")
	})
	st := p.status(t)
	if !strings.HasPrefix(st.Healthz, "vault-transit: ") || strings.HasSuffix(st.Healthz, "...") || st.KeyID == "" {
		t.Fatalf("Status = %+v, want a whole reason naming the provider and a non-empty key_id", st)
	}
	base := p.opsURL(t)
	if code, _ := httpGet(t, base+"/livez"); code != 200 {
		t.Fatalf("/livez = %d while credentials are rejected, want 200", code)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 503 || !strings.Contains(strings.ToLower(body), "permission denied") {
		t.Fatalf("/readyz = %d %q, want 503 naming the denial", code, body)
	}
	select {
	case err := <-p.done:
		t.Fatalf("serve exited on rejected credentials: %v", err)
	default:
	}

	// Field case 13: the permission comes back, the plugin recovers alone.
	fv.AddToken("hvs.revoked")
	eventually(t, 10*time.Second, "recovery", func() bool { return p.status(t).Healthz == "ok" })
	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d after recovery", code)
	}
}

func TestSIGTERMDrainsAndRemovesTheSocket(t *testing.T) {
	fv := fakevault.New(t)
	fv.AddToken("tok")
	dir := shortDir(t)
	p := startServe(t, dir, fmt.Sprintf(`
provider:
  vault:
    address: %s
    auth: {method: token, token: {tokenFile: %s}}
`, fv.URL, writeFile(t, filepath.Join(dir, "token"), "tok")))
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if _, err := os.Lstat(p.socket); !os.IsNotExist(err) {
		t.Fatalf("socket still exists after SIGTERM: %v", err)
	}
	if !strings.Contains(p.logs.String(), "trousseau stopped") {
		t.Fatalf("no shutdown log line:\n%s", p.logs.String())
	}
}

func TestCheckConfigPrintsSettingsButNoSecrets(t *testing.T) {
	dir := shortDir(t)
	tokenFile := writeFile(t, filepath.Join(dir, "token"), "hvs.must-not-be-printed")
	cfg := writeFile(t, filepath.Join(dir, "trousseau.yaml"), fmt.Sprintf(`
provider:
  vault:
    address: https://vault:8200
    tls: {insecureSkipVerify: true}
    auth: {method: token, token: {tokenFile: %s}}
`, tokenFile))
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "--config", cfg}, &stdout, &stderr); code != 0 {
		t.Fatalf("check-config exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"configuration is valid", tokenFile, "WARNING: provider.vault.tls.insecureSkipVerify", "transitMount: transit"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hvs.must-not-be-printed") {
		t.Fatal("check-config printed the token")
	}

	stdout.Reset()
	stderr.Reset()
	code := run(context.Background(), []string{"check-config", "--config", cfg, "--vault-request-timeout", "5s"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "provider.vault.requestTimeout: must be positive and below the apiserver's KMS timeout of 3s") {
		t.Fatalf("invalid config: exit %d, stderr:\n%s", code, stderr.String())
	}
}

func TestVersionDefaultsToDevAndUsageErrorsExit2(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &stdout, &stderr); code != 0 || strings.TrimSpace(stdout.String()) != "trousseau dev" {
		t.Fatalf("version: exit %d, %q", code, stdout.String())
	}
	for _, args := range [][]string{nil, {"bogus"}, {"serve", "--no-such-flag"}, {"serve", "--vault-token", "x"}} {
		if code := run(context.Background(), args, io.Discard, io.Discard); code != 2 {
			t.Errorf("run %q: exit %d, want 2", args, code)
		}
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"serve", "--help"}, io.Discard, &stdout); code != 0 || !strings.Contains(stdout.String(), "highest first: a command-line flag") {
		t.Fatalf("serve --help must document precedence (exit %d):\n%s", code, stdout.String())
	}
}

// TestCheckConfigAndServeRejectTheSameCredentialFiles: check-config must
// never call "valid" a configuration that serve refuses to start with.
func TestCheckConfigAndServeRejectTheSameCredentialFiles(t *testing.T) {
	dir := shortDir(t)
	cases := []struct {
		name, tokenFile, want string
	}{
		{"quoted value", writeFile(t, filepath.Join(dir, "quoted"), "'hvs.x'\n"), "provider.vault.auth.token.tokenFile: credential file " + dir + "/quoted holds a quoted value"},
		{"nonexistent file", filepath.Join(dir, "missing"), "provider.vault.auth.token.tokenFile: credential file " + dir + "/missing does not exist: create it, or correct the path"},
		{"empty file", writeFile(t, filepath.Join(dir, "empty"), ""), "provider.vault.auth.token.tokenFile: credential file " + dir + "/empty is empty"},
		{"relative path", "token", `provider.vault.auth.token.tokenFile: "token" must be an absolute path`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeFile(t, filepath.Join(dir, "trousseau.yaml"), fmt.Sprintf(`
provider:
  vault:
    address: http://127.0.0.1:1
    auth: {method: token, token: {tokenFile: %q}}
`, tc.tokenFile))
			for _, cmd := range [][]string{
				{"check-config", "--config", cfg},
				{"serve", "--config", cfg, "--socket-path", filepath.Join(dir, "kms.sock"), "--ops-address", "127.0.0.1:0"},
			} {
				var stdout, stderr bytes.Buffer
				if code := run(context.Background(), cmd, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
					t.Errorf("%s: exit %d, stderr:\n%s\nwant exit 1 and %q", cmd[0], code, stderr.String(), tc.want)
				}
				if strings.Contains(stdout.String(), "configuration is valid") {
					t.Errorf("%s called the configuration valid", cmd[0])
				}
			}
		})
	}
}

func TestCheckConfigWithoutAnyConfigurationSaysHowToGiveOne(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"check-config"}, io.Discard, &stderr)
	want := "no configuration given: pass --config FILE or set TROUSSEAU_CONFIG (or provide every setting as flags/env)"
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr.String(), want)
	}
}

func TestLogsWriteDurationsWithAUnit(t *testing.T) {
	cases := []struct{ format, want string }{
		{"json", `"duration":"1.804465ms"`},
		{"text", "duration=1.804465ms"},
	}
	for _, tc := range cases {
		t.Run(tc.format, func(t *testing.T) {
			var b bytes.Buffer
			newLogger(config.Log{Format: tc.format, Level: "info"}, &b).Info("rpc", "duration", 1804465*time.Nanosecond)
			if !strings.Contains(b.String(), tc.want) {
				t.Fatalf("log line %q lacks %q", b.String(), tc.want)
			}
		})
	}
}

func TestStaleSocketRemovalIsLogged(t *testing.T) {
	fv := fakevault.New(t)
	fv.AddToken("tok")
	dir := shortDir(t)
	// What a SIGKILLed plugin leaves: a socket file nobody accepts on.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "kms.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	p := startServe(t, dir, fmt.Sprintf(`
provider:
  vault:
    address: %s
    auth: {method: token, token: {tokenFile: %s}}
`, fv.URL, writeFile(t, filepath.Join(dir, "token"), "tok")))
	// The socket accepts connections before serve logs its startup line.
	eventually(t, 5*time.Second, "the startup log line", func() bool { return strings.Contains(p.logs.String(), "trousseau starting") })
	if logs := p.logs.String(); !strings.Contains(logs, `"level":"INFO","msg":"removed stale socket left by a previous process"`) ||
		!strings.Contains(logs, `"refresh_interval":"1s"`) {
		t.Fatalf("startup logs lack the stale socket line or a unit on the refresh interval:\n%s", logs)
	}
}
