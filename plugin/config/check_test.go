package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a PEM certificate and its PEM key.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trousseau"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func writeFileIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckRejectsEveryFileServeWouldReject: check-config and serve share
// Check, so a config it accepts names only readable, well-formed files.
func TestCheckRejectsEveryFileServeWouldReject(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	otherCert, _ := selfSigned(t)
	good := writeFileIn(t, dir, "good", "s.credential\n")
	cert := writeFileIn(t, dir, "cert.pem", string(certPEM))
	key := writeFileIn(t, dir, "key.pem", string(keyPEM))
	approle := func(roleID, secretID string) string {
		return fmt.Sprintf("auth: {method: approle, approle: {roleIDFile: %q, secretIDFile: %q}}", roleID, secretID)
	}
	cases := []struct {
		name    string
		vault   string // the provider.vault body after the address
		wantErr string // "" = valid
	}{
		{"all files good", approle(good, good) + "\ntls: {caFile: " + cert + "}", ""},
		{"cert auth with a matching pair", "auth: {method: cert}\ntls: {certFile: " + cert + ", keyFile: " + key + "}", ""},
		{"quoted secret-id", approle(good, writeFileIn(t, dir, "quoted", `"s.x"`)),
			"provider.vault.auth.approle.secretIDFile: credential file " + dir + "/quoted holds a quoted value: remove the surrounding quotes"},
		{"missing role-id", approle(dir+"/nope", good),
			"provider.vault.auth.approle.roleIDFile: credential file " + dir + "/nope does not exist: create it, or correct the path"},
		{"empty token", "auth: {method: token, token: {tokenFile: " + writeFileIn(t, dir, "empty", "\n") + "}}",
			"provider.vault.auth.token.tokenFile: credential file " + dir + "/empty is empty"},
		{"relative secret-id", approle(good, "secret-id"),
			`provider.vault.auth.approle.secretIDFile: "secret-id" must be an absolute path`},
		{"missing projected SA token", "auth: {method: kubernetes, kubernetes: {role: r, tokenFile: " + dir + "/sa}}",
			"provider.vault.auth.kubernetes.tokenFile: credential file " + dir + "/sa does not exist"},
		{"CA file is not PEM", approle(good, good) + "\ntls: {caFile: " + good + "}",
			"provider.vault.tls.caFile: " + good + " holds no PEM certificate"},
		{"missing CA file", approle(good, good) + "\ntls: {caFile: " + dir + "/ca.pem}",
			"provider.vault.tls.caFile: credential file " + dir + "/ca.pem does not exist"},
		{"key file holds a certificate", "auth: {method: cert}\ntls: {certFile: " + cert + ", keyFile: " + cert + "}",
			"provider.vault.tls.keyFile: " + cert + " holds no PEM private key"},
		{"key of another certificate", "auth: {method: cert}\ntls: {certFile: " + writeFileIn(t, dir, "other.pem", string(otherCert)) + ", keyFile: " + key + "}",
			"are not a usable pair"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.ReplaceAll(tc.vault, "\n", "\n    ")
			path := writeConfig(t, "provider:\n  vault:\n    address: https://vault:8200\n    "+body+"\n")
			_, err := Check(path, nil, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check error = %v\nwant it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "s.x") || strings.Contains(err.Error(), strings.Split(string(certPEM), "\n")[1]) ||
				strings.Contains(err.Error(), strings.Split(string(keyPEM), "\n")[1]) {
				t.Fatalf("error shows file content: %v", err)
			}
		})
	}
}

func TestCheckReportsEveryProblemOfTheFileAtOnce(t *testing.T) {
	path := writeConfig(t, `
socket: {moed: "0600", mode: 0600}
log: {levle: debug, format: xml}
status: {refreshInterval: 0s}
provider:
  vault:
    adress: https://vault:8200
    address: 8200
    auth: {method: token, token: {tokenFile: /nonexistent/token}}
`)
	_, err := Check(path, nil, nil)
	if err == nil {
		t.Fatal("Check accepted a broken file")
	}
	msg := err.Error()
	for _, want := range []string{
		`unknown field "socket.moed"`, `unknown field "log.levle"`, `unknown field "provider.vault.adress"`, // every unknown key
		`socket.mode: must be a string such as "0600"`, `status.refreshInterval: must be positive`, // every type error
		"provider.vault.address: must be a string",
		"log.format: must be json or text",                                        // Validate ran on what parsed
		"provider.vault.auth.token.tokenFile: credential file /nonexistent/token", // and the files were checked
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Check error lacks %q:\n%s", want, msg)
		}
	}
	// The dropped address is reported once, as a type error, not again as "missing".
	if strings.Contains(msg, "must be an http(s) URL") {
		t.Errorf("Check repeats the dropped address as a Validate error:\n%s", msg)
	}
}

func TestCheckNamesAMistypedVariableAndTheClosestKnownOne(t *testing.T) {
	dir := t.TempDir()
	token := writeFileIn(t, dir, "token", "s.tok")
	environ := []string{
		"TROUSSEAU_VAULT_ADDRESS=https://vault:8200",
		"TROUSSEAU_VAULT_AUTH_METHOD=token",
		"TROUSSEAU_VAULT_AUTH_TOKEN_FILE=" + token,
		"TROUSSEAU_RUNTIME=local", // read by the appliance tooling, not a typo
		"HOME=/root",
	}
	if _, err := Check("", environ, nil); err != nil {
		t.Fatalf("known variables rejected: %v", err)
	}
	cases := []struct{ variable, want string }{
		{"TROUSSEAU_VAULT_ADRESS", "environment variable TROUSSEAU_VAULT_ADRESS is not a trousseau setting: did you mean TROUSSEAU_VAULT_ADDRESS?"},
		{"TROUSSEAU_LOGLEVEL", "did you mean TROUSSEAU_LOG_LEVEL?"},
		{"TROUSSEAU_CONFG", "did you mean TROUSSEAU_CONFIG?"},
		{"TROUSSEAU_SOMETHING_ELSE_ENTIRELY", "see `trousseau serve --help` for every variable"},
	}
	for _, tc := range cases {
		t.Run(tc.variable, func(t *testing.T) {
			_, err := Check("", append(environ, tc.variable+"=x"), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCheckWithoutAnyConfigurationSaysHowToGiveOne(t *testing.T) {
	want := "no configuration given: pass --config FILE or set TROUSSEAU_CONFIG (or provide every setting as flags/env)"
	for name, environ := range map[string][]string{
		"empty environment":     nil,
		"only non-provider env": {"TROUSSEAU_LOG_LEVEL=debug"},
		"typo only":             {"TROUSSEAU_VAULT_ADRESS=https://v:8200"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Check("", environ, nil)
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "exactly one provider stanza") {
				t.Fatalf("Check error = %v, want %q instead of the provider stanza message", err, want)
			}
		})
	}
	// TROUSSEAU_CONFIG stands in for --config.
	path := writeConfig(t, "log: {level: loud}\n")
	if _, err := Check("", []string{"TROUSSEAU_CONFIG=" + path}, nil); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("TROUSSEAU_CONFIG ignored: %v", err)
	}
}
