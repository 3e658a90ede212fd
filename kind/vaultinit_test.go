package kind

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/trousseau-io/trousseau/appliance/tools"
)

// persistentVault runs the real Vault binary with file storage, as
// charts/vault-dev's persistent mode does, on a loopback port.
type persistentVault struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
}

func (v *persistentVault) start() {
	v.t.Helper()
	cfg := fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address = %q
  tls_disable = true
}
disable_mlock = true
`, filepath.Join(v.dir, "data"), strings.TrimPrefix(v.addr, "http://"))
	cfgFile := filepath.Join(v.dir, "vault.hcl")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		v.t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(v.dir, "vault.log"))
	if err != nil {
		v.t.Fatal(err)
	}
	v.cmd = exec.Command(v.bin, "server", "-config="+cfgFile)
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	v.cmd.Env = []string{"HOME=" + v.dir, "PATH=" + os.Getenv("PATH")}
	if err := v.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	c := v.client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Sys().SealStatus(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(v.dir, "vault.log"))
			v.t.Fatalf("vault did not answer within 30s:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (v *persistentVault) stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	_ = v.cmd.Wait()
	v.cmd = nil
}

func (v *persistentVault) client() *vaultapi.Client {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.addr
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		v.t.Fatal(err)
	}
	c.ClearToken()
	return c
}

func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// TestPersistentVaultSurvivesRestartWithHostUnsealMaterial is the
// persistent vault-dev mode's bootstrap against a real Vault: initialise
// once, keep the material on the host (0600), unseal after a restart, and
// the Transit key written before the restart is still there.
func TestPersistentVaultSurvivesRestartWithHostUnsealMaterial(t *testing.T) {
	bin, err := tools.Vault.Path()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v := &persistentVault{t: t, bin: bin, dir: dir, addr: freeLoopbackAddr(t)}
	v.start()
	defer v.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	initFile := filepath.Join(dir, "state", "init.json")

	c := v.client()
	token, err := initAndUnseal(ctx, c, initFile)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(initFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("unseal material %s: %v, mode %v; want 0600", initFile, err, fi.Mode())
	}
	c.SetToken(token)
	if err := c.Sys().Mount(transitMount, &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Write(transitMount+"/keys/"+transitKey, map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatal(err)
	}
	// A second call on an unsealed Vault is a no-op that returns the same token.
	if again, err := initAndUnseal(ctx, v.client(), initFile); err != nil || again != token {
		t.Fatalf("idempotent call: %v (same token: %v)", err, again == token)
	}

	v.stop()
	v.start()
	st, err := v.client().Sys().SealStatus()
	if err != nil || !st.Sealed {
		t.Fatalf("a restarted file-storage Vault must come back sealed: %+v %v", st, err)
	}
	c = v.client()
	if _, err := initAndUnseal(ctx, c, initFile); err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	key, err := c.Logical().Read(transitMount + "/keys/" + transitKey)
	if err != nil || key == nil {
		t.Fatalf("the Transit key did not survive the restart: %v", err)
	}

	// Losing the material is reported with the consequence and the fix.
	if err := os.Remove(initFile); err != nil {
		t.Fatal(err)
	}
	v.stop()
	v.start()
	_, err = initAndUnseal(ctx, v.client(), initFile)
	if err == nil || !strings.Contains(err.Error(), "cannot be recovered") || strings.Contains(err.Error(), token) {
		t.Fatalf("want a clear unrecoverable error that does not leak the token, got %v", err)
	}
}
