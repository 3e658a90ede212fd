package transit

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewStartsWhileVaultIsDownButRejectsInvalidConfig(t *testing.T) {
	// Nothing listens on port 1: New must not care.
	cfg := fakeConfig(t, "http://127.0.0.1:1")
	p, err := New(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatalf("New failed although only Vault is down: %v", err)
	}
	_ = p.Close()

	for name, mutate := range map[string]func(){
		"address without scheme": func() { cfg.Address = "vault.example:8200" },
		"missing CA file":        func() { cfg.TLS.CAFile = filepath.Join(t.TempDir(), "ca.pem") },
		"unknown auth method":    func() { cfg.Auth.Method = "userpass" },
	} {
		saved := cfg
		mutate()
		if _, err := New(context.Background(), cfg, Options{}); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
		cfg = saved
	}
}

func TestInsecureSkipVerifyIsLoud(t *testing.T) {
	var logs bytes.Buffer
	cfg := fakeConfig(t, "https://127.0.0.1:1")
	cfg.TLS.InsecureSkipVerify = true
	p, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "insecureSkipVerify") {
		t.Fatalf("no warning about insecureSkipVerify in the log:\n%s", logs.String())
	}
}
