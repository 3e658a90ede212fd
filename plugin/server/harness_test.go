package server

import (
	"context"
	"github.com/trousseau-io/trousseau/plugin/internal/logbuf"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/trousseau-io/trousseau/plugin/kms"
)

type harness struct {
	srv    *Server
	path   string
	reg    *prometheus.Registry
	logs   *logbuf.Buffer
	client kmsapi.KeyManagementServiceClient
	cancel context.CancelFunc
	done   chan error
}

type harnessOptions struct {
	refresh time.Duration
	grace   time.Duration
	// waitKnown waits for the first key status before returning.
	waitKnown bool
}

// socketPath returns a short path: unix socket paths are limited to about
// 108 bytes, and t.TempDir() embeds the (long) test name.
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "trs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "kms.sock")
}

func startServer(t testing.TB, p kms.Provider, o harnessOptions) *harness {
	t.Helper()
	return startServerAt(t, socketPath(t), p, o)
}

func startServerAt(t testing.TB, path string, p kms.Provider, o harnessOptions) *harness {
	t.Helper()
	if o.refresh == 0 {
		o.refresh = time.Hour
	}
	if o.grace == 0 {
		o.grace = 5 * time.Second
	}
	h := &harness{path: path, reg: prometheus.NewRegistry(), logs: &logbuf.Buffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(Options{Provider: p, Logger: log, Registerer: h.reg, RefreshInterval: o.refresh, ShutdownGrace: o.grace})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	sock, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- srv.Serve(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = kmsapi.NewKeyManagementServiceClient(conn)
	if o.waitKnown {
		eventually(t, 5*time.Second, "first key status", func() bool { return srv.Snapshot().Known })
	}
	return h
}

// stop cancels the server and waits for Serve to return.
func (h *harness) stop(t testing.TB) error {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // keep it for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop within 10s")
		return nil
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func callCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
