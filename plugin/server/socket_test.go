package server

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/storage/value"
	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmsapi "k8s.io/kms/apis/v2"
	kmsservice "k8s.io/kms/pkg/service"

	"github.com/trousseau-io/trousseau/plugin/kms/kmstest"
)

// helperSocketEnv makes the test binary act as a plugin process that a test
// can SIGKILL (see TestMain).
const helperSocketEnv = "TROUSSEAU_SERVER_TEST_HELPER_SOCKET"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperSocketEnv); path != "" {
		os.Exit(runHelperPlugin(path))
	}
	os.Exit(m.Run())
}

func runHelperPlugin(path string) int {
	srv, err := New(Options{Provider: kmstest.New("fake"), RefreshInterval: time.Hour, ShutdownGrace: time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sock, err := Listen(path, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("serving")
	if err := srv.Serve(context.Background(), sock); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestFieldCase01StaleSocketIsRemoved(t *testing.T) {
	path := socketPath(t)
	// A socket file nobody accepts on: what a SIGKILLed plugin leaves.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if info, err := os.Lstat(path); err != nil || info.Mode().Type() != fs.ModeSocket {
		t.Fatalf("setup: want a stale socket file at %s: %v", path, err)
	}

	h := startServerAt(t, path, kmstest.New("fake"), harnessOptions{waitKnown: true})
	st, err := h.client.Status(callCtx(t, 5*time.Second), &kmsapi.StatusRequest{})
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("Status over the reclaimed socket = %v, %v", st, err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Fatalf("socket mode = %04o, want 0600", perm)
	}
}

func TestListenReportsWhetherItRemovedAStaleSocket(t *testing.T) {
	cases := []struct {
		name  string
		stale bool
	}{{"fresh path", false}, {"stale socket left behind", true}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			if tc.stale {
				l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				l.SetUnlinkOnClose(false)
				l.Close()
			}
			sock, err := Listen(path, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { sock.Close(); sock.Remove() }()
			if sock.RemovedStale != tc.stale {
				t.Fatalf("RemovedStale = %v, want %v", sock.RemovedStale, tc.stale)
			}
		})
	}
}

func TestFieldCase01LiveSocketIsNeverStolen(t *testing.T) {
	first := startServer(t, kmstest.New("fake"), harnessOptions{waitKnown: true})

	_, err := Listen(first.path, 0o600)
	if err == nil {
		t.Fatal("a second server took over a live socket")
	}
	want := "another process is serving on " + first.path + "; stop it or choose another socket path"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want it to say %q", err, want)
	}
	st, err := first.client.Status(callCtx(t, 5*time.Second), &kmsapi.StatusRequest{})
	if err != nil || st.Healthz != "ok" {
		t.Fatalf("first server stopped serving after the attempt: %v, %v", st, err)
	}
}

func TestListenNeverDeletesWhatIsNotASocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "trs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	regular := filepath.Join(dir, "kms.sock")
	if err := os.WriteFile(regular, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	directory := filepath.Join(dir, "dir.sock")
	if err := os.Mkdir(directory, 0o700); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"regular file", regular, "is a regular file, not a socket: refusing to delete it"},
		{"directory", directory, "is a directory, not a socket: refusing to delete it"},
		{"relative path", "run/kms.sock", "must be absolute"},
		{"parent is a file", filepath.Join(regular, "kms.sock"), "create socket directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Listen(tc.path, 0o600)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen(%s) error = %v, want %q", tc.path, err, tc.want)
			}
		})
	}
	if b, err := os.ReadFile(regular); err != nil || string(b) != "precious" {
		t.Fatalf("the regular file was touched: %q, %v", b, err)
	}
}

func TestListenCreatesTheSocketDirectory(t *testing.T) {
	dir, err := os.MkdirTemp("", "trs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "run", "trousseau", "kms.sock")
	sock, err := Listen(path, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	info, err := os.Stat(filepath.Dir(path))
	if err != nil || info.Mode().Perm() != 0o750 {
		t.Fatalf("socket directory mode = %v (%v), want 0750", info.Mode().Perm(), err)
	}
	if info, err := os.Lstat(path); err != nil || info.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v (%v), want the configured 0660", info.Mode().Perm(), err)
	}
}

// A socket that is reachable before it gets its mode would let any local
// user connect during that window, and a connection accepted then stays
// open. Under umask 0 a bind alone yields 0777, so a watcher polling the
// path while the plugin starts repeatedly must only ever see the mode.
func TestFieldCase01SocketNeverAppearsWiderThanItsMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "kms.sock")
	stop := make(chan struct{})
	seen := make(chan fs.FileMode, 1)
	go func() {
		defer close(seen)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if info, err := os.Lstat(path); err == nil && info.Mode().Perm() != 0o600 {
				seen <- info.Mode().Perm()
				return
			}
		}
	}()
	for range 300 {
		sock, err := Listen(path, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		sock.Close()
		if err := sock.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if mode, ok := <-seen; ok {
		t.Fatalf("the socket was visible at %s with mode %04o before it got 0600", path, mode)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Listen left %d entries behind in the socket directory, e.g. %s", len(entries), entries[0].Name())
	}
}

// config accepts a socket directory of up to 93 bytes, leaving room for
// where Listen binds first; that longest directory must work.
func TestListenWorksInTheLongestDirectoryConfigAccepts(t *testing.T) {
	base, err := os.MkdirTemp("", "trs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, strings.Repeat("d", 93-len(base)-1))
	sock, err := Listen(filepath.Join(dir, "kms.sock"), 0o600)
	if err != nil {
		t.Fatalf("Listen in a directory of %d bytes: %v", len(dir), err)
	}
	sock.Close()
}

// apiserverClient is the exact gRPC client kube-apiserver uses for KMS v2.
func apiserverClient(t testing.TB, path string) kmsservice.Service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	svc, err := kmsv2.NewGRPCService(ctx, "unix://"+path, "trousseau", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestFieldCase17PluginIsBackWithinASecondAfterSIGKILL(t *testing.T) {
	path := socketPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperSocketEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "serving" {
		cmd.Process.Kill()
		t.Fatalf("helper plugin did not start: %q, %v", line, err)
	}
	client := apiserverClient(t, path)
	if st, err := client.Status(context.Background()); err != nil {
		t.Fatalf("Status on the first plugin: %v", err)
	} else if st.KeyID != "fake-key-1" {
		t.Fatalf("first plugin key_id = %q", st.KeyID)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if info, err := os.Lstat(path); err != nil || info.Mode().Type() != fs.ModeSocket {
		t.Fatalf("SIGKILL should leave the socket file behind: %v", err)
	}

	start := time.Now()
	h := startServerAt(t, path, kmstest.New("fake"), harnessOptions{})
	// The apiserver's client reconnects on its own; it must get answers
	// again, not hang past its timeout.
	var st *kmsservice.StatusResponse
	eventually(t, 3*time.Second, "Status from the restarted plugin", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		st, err = client.Status(ctx)
		return err == nil && st.Healthz == "ok"
	})
	back := time.Since(start)
	t.Logf("restarted plugin answered the apiserver client %s after start", back)
	if back > time.Second {
		t.Fatalf("restarted plugin took %s to serve, want under 1s", back)
	}

	enc, err := client.Encrypt(context.Background(), "uid-after-restart", []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatalf("Encrypt after restart: %v", err)
	}
	if enc.KeyID != st.KeyID {
		t.Fatalf("Encrypt key_id %q != Status key_id %q", enc.KeyID, st.KeyID)
	}
	pt, err := client.Decrypt(context.Background(), "uid-dec", &kmsservice.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: enc.KeyID, Annotations: enc.Annotations})
	if err != nil || string(pt) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("Decrypt after restart = %q, %v", pt, err)
	}
	if h.srv.Snapshot().KeyID != st.KeyID {
		t.Fatalf("restarted plugin cache key_id %q != Status %q", h.srv.Snapshot().KeyID, st.KeyID)
	}
}

// TestApiserverEnvelopeAcceptsOurResponses runs the apiserver's own DEK
// generation (GenerateTransformer, the code path behind a key_id change)
// and its validation of what Encrypt returned.
func TestApiserverEnvelopeAcceptsOurResponses(t *testing.T) {
	p := kmstest.New("vault-transit")
	p.SetKeyID("transit-3f9a1c2b7d4e-v3")
	h := startServer(t, p, harnessOptions{waitKnown: true})
	client := apiserverClient(t, h.path)
	ctx := callCtx(t, 10*time.Second)

	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v2" || st.Healthz != "ok" {
		t.Fatalf("Status = %+v", st)
	}
	if _, err := kmsv2.ValidateKeyID(st.KeyID); err != nil {
		t.Fatalf("apiserver rejects our key_id: %v", err)
	}
	transformer, obj, _, err := kmsv2.GenerateTransformer(ctx, "uid-gen", client, true)
	if err != nil {
		t.Fatalf("apiserver DEK generation against our plugin: %v", err)
	}
	// What the apiserver does next on a write: encrypt the object with the
	// DEK and validate the envelope it is about to store in etcd.
	obj.EncryptedData, err = transformer.TransformToStorage(ctx, []byte("a secret value"), value.DefaultContext("/registry/secrets/default/s"))
	if err != nil {
		t.Fatalf("encrypt with the generated DEK: %v", err)
	}
	if err := kmsv2.ValidateEncryptedObject(obj); err != nil {
		t.Fatalf("apiserver rejects our Encrypt response: %v", err)
	}
	if obj.KeyID != st.KeyID {
		t.Fatalf("Encrypt key_id %q != Status key_id %q: the apiserver would drop the DEK", obj.KeyID, st.KeyID)
	}
	seed, err := client.Decrypt(ctx, "uid-dec", &kmsservice.DecryptRequest{Ciphertext: obj.EncryptedDEKSource, KeyID: obj.KeyID, Annotations: obj.Annotations})
	if err != nil {
		t.Fatalf("Decrypt of the apiserver's stored DEK source: %v", err)
	}
	if len(seed) != 32 {
		t.Fatalf("decrypted seed is %d bytes, want 32", len(seed))
	}
	assertAbsent(t, h.logs.String(), seed)
}

// TestFieldCase15ConnectionChurnIsTolerated mimics encryption-config
// reloads: the apiserver builds a new client (a new connection) and closes
// the old one while calls are still flowing on both.
func TestFieldCase15ConnectionChurnIsTolerated(t *testing.T) {
	h := startServer(t, kmstest.New("fake"), harnessOptions{waitKnown: true})
	long := apiserverClient(t, h.path)
	errs := make(chan error, 51) // the steady client and each churn client report at most once
	stop := make(chan struct{})
	var steady sync.WaitGroup
	steady.Add(1)
	go func() {
		defer steady.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			enc, err := long.Encrypt(ctx, "uid-steady", []byte("0123456789abcdef0123456789abcdef"))
			if err == nil {
				_, err = long.Decrypt(ctx, "uid-steady", &kmsservice.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: enc.KeyID})
			}
			cancel()
			if err != nil {
				errs <- fmt.Errorf("steady client: %w", err)
				return
			}
		}
	}()

	var churn sync.WaitGroup
	for i := range 50 {
		churn.Add(1)
		go func() {
			defer churn.Done()
			ctx, cancel := context.WithCancel(context.Background())
			svc, err := kmsv2.NewGRPCService(ctx, "unix://"+h.path, "trousseau", 3*time.Second)
			if err != nil {
				errs <- err
				cancel()
				return
			}
			if _, err := svc.Status(ctx); err != nil {
				errs <- fmt.Errorf("churn client %d: %w", i, err)
			}
			cancel() // closes the connection, as a reload drops the old transformer
		}()
	}
	churn.Wait()
	close(stop)
	steady.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st, err := long.Status(context.Background()); err != nil || st.Healthz != "ok" {
		t.Fatalf("after the churn Status = %v, %v", st, err)
	}
}
