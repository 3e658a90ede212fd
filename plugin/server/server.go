// Package server serves the KMS v2 gRPC API on a unix socket for
// kube-apiserver, backed by one kms.Provider. It owns the Status cache and
// the key_id handshake, the mapping of provider errors to gRPC codes, caller
// deadlines, and the socket's lifecycle.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/trousseau-io/trousseau/plugin/ciphertext"
	"github.com/trousseau-io/trousseau/plugin/kms"
)

// apiVersion is the only version the apiserver accepts; it must never change
// while the process runs.
const apiVersion = "v2"

// Options configures a Server.
type Options struct {
	Provider kms.Provider
	Logger   *slog.Logger
	// Registerer receives the trousseau_rpc_duration_seconds,
	// trousseau_healthy and trousseau_decrypt_* metrics.
	Registerer prometheus.Registerer
	// RefreshInterval is how often the key status is refreshed while healthy.
	RefreshInterval time.Duration
	// ShutdownGrace bounds how long in-flight calls may finish on shutdown.
	ShutdownGrace time.Duration
}

// Server is the KMS v2 gRPC service.
type Server struct {
	kmsapi.UnimplementedKeyManagementServiceServer

	provider kms.Provider
	log      *slog.Logger
	grace    time.Duration
	status   *statusCache
	decrypts *decryptFlights
	grpc     *grpc.Server
}

// New builds a Server. It does not contact the provider: a backend that is
// down must not keep the socket from being served.
func New(opts Options) (*Server, error) {
	if opts.Provider == nil {
		return nil, errors.New("server: a provider is required")
	}
	if opts.RefreshInterval <= 0 {
		return nil, fmt.Errorf("server: refresh interval must be positive, got %s", opts.RefreshInterval)
	}
	if opts.ShutdownGrace < 0 {
		return nil, fmt.Errorf("server: shutdown grace must not be negative, got %s", opts.ShutdownGrace)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("server: register metrics: %w", err)
	}
	s := &Server{
		provider: opts.Provider,
		log:      log,
		grace:    opts.ShutdownGrace,
		status:   newStatusCache(opts.Provider, opts.RefreshInterval, m.healthy, log),
		decrypts: &decryptFlights{provider: opts.Provider, coalesced: m.decryptCoalesced, waiting: m.decryptWaiting},
	}
	s.grpc = grpc.NewServer(grpc.ChainUnaryInterceptor(m.interceptor(log)))
	kmsapi.RegisterKeyManagementServiceServer(s.grpc, s)
	return s, nil
}

// Snapshot returns the cached key status, for /readyz.
func (s *Server) Snapshot() Snapshot { return s.status.get() }

// RefreshStatus asks the provider for the key status now, instead of waiting
// for the background loop.
func (s *Server) RefreshStatus(ctx context.Context) { s.status.refresh(ctx) }

// Serve serves sock until ctx ends, then drains: in-flight calls get the
// shutdown grace to finish, the rest are cut, and the socket file is removed.
// It returns nil after a requested shutdown.
func (s *Server) Serve(ctx context.Context, sock *Socket) error {
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		s.status.run(loopCtx)
	}()
	defer func() {
		stopLoop()
		<-loopDone
	}()

	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(sock) }()
	s.log.Info("serving KMS v2", "socket", sock.Path(), "provider", s.provider.Name())

	var serveErr error
	select {
	case serveErr = <-served:
		serveErr = fmt.Errorf("serve KMS v2 on %s: %w", sock.Path(), serveErr)
	case <-ctx.Done():
		s.log.Info("shutting down: draining in-flight calls", "grace", s.grace)
		s.drain()
		<-served
	}
	if err := sock.Remove(); err != nil {
		s.log.Warn("could not remove socket", "error", err)
	}
	return serveErr
}

func (s *Server) drain() {
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(s.grace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.log.Warn("shutdown grace ran out: cutting remaining calls", "grace", s.grace)
		s.grpc.Stop()
		<-stopped
	}
}

// Status implements the KMS v2 Status RPC from the cache. Backend trouble is
// reported in healthz, never as a gRPC error.
func (s *Server) Status(context.Context, *kmsapi.StatusRequest) (*kmsapi.StatusResponse, error) {
	snap := s.status.get()
	return &kmsapi.StatusResponse{Version: apiVersion, Healthz: snap.Healthz, KeyId: snap.KeyID}, nil
}

// Encrypt implements the KMS v2 Encrypt RPC. It encrypts with the key_id that
// Status reports and returns that same key_id, which is what the apiserver
// checks before it adopts a new DEK seed (field case 14).
func (s *Server) Encrypt(ctx context.Context, req *kmsapi.EncryptRequest) (*kmsapi.EncryptResponse, error) {
	if len(req.GetPlaintext()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "plaintext is empty")
	}
	snap := s.status.get()
	if !snap.Known {
		return nil, status.Error(codes.Unavailable, "no key status yet: "+snap.Healthz)
	}
	payload, err := call(ctx, func(ctx context.Context) ([]byte, error) {
		return s.provider.Encrypt(ctx, snap.KeyID, req.GetPlaintext())
	})
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	ct, err := ciphertext.Encode(s.provider.Name(), payload)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &kmsapi.EncryptResponse{Ciphertext: ct, KeyId: snap.KeyID}, nil
}

// Decrypt implements the KMS v2 Decrypt RPC. Identical Decrypts that overlap
// in time share one provider call (see decryptFlights), so a cold apiserver
// costs one Vault request per DEK seed, not one per decode worker.
func (s *Server) Decrypt(ctx context.Context, req *kmsapi.DecryptRequest) (*kmsapi.DecryptResponse, error) {
	name, payload, err := ciphertext.Decode(req.GetCiphertext())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	if name != s.provider.Name() {
		return nil, status.Errorf(codes.InvalidArgument, "ciphertext was written by provider %s, this plugin runs %s", name, s.provider.Name())
	}
	if req.GetKeyId() == "" {
		return nil, status.Error(codes.InvalidArgument, "key_id is empty")
	}
	pt, err := s.decrypts.decrypt(ctx, req.GetKeyId(), payload)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	return &kmsapi.DecryptResponse{Plaintext: pt}, nil
}

// call runs a provider operation and returns when it does or when the
// caller's deadline passes, whichever is first: a backend that ignores its
// context must not hold the apiserver past its KMS timeout (field case 02).
func call(ctx context.Context, op func(context.Context) ([]byte, error)) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := op(ctx)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
