// Package ops serves the plugin's operations endpoints over HTTP: /livez for
// process liveness, /readyz from the cached key status, and /metrics.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownTimeout bounds how long open ops requests may finish on shutdown.
const shutdownTimeout = 2 * time.Second

// ReadyFunc reports readiness and its reason ("ok" when ready). It must not
// block on a backend: /readyz is probed often.
type ReadyFunc func() (ready bool, reason string)

// Server is a bound, not yet serving, ops endpoint.
type Server struct {
	lis  net.Listener
	http *http.Server
	log  *slog.Logger
}

// Listen binds addr (host:port) now, so a wrong address fails at startup
// with a clear message rather than after the plugin reports itself up.
func Listen(addr string, gatherer prometheus.Gatherer, ready ReadyFunc, log *slog.Logger) (*Server, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("ops address %q must be host:port such as 127.0.0.1:8787: %w", addr, err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bind ops address %s (is another process using it, or is the host wrong?): %w", addr, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	// Liveness is the process alone: a down backend must never get the
	// plugin restarted (field cases 02, 13).
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, reason := ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, reason)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return &Server{
		lis:  lis,
		http: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		log:  log,
	}, nil
}

// Addr is the bound address, useful when addr asked for port 0.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves until ctx ends, then shuts down.
func (s *Server) Serve(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(s.lis) }()
	s.log.Info("serving ops endpoints", "address", s.Addr(), "paths", "/livez /readyz /metrics")
	select {
	case err := <-served:
		return fmt.Errorf("serve ops endpoints on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(sctx); err != nil {
		s.http.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve ops endpoints on %s: %w", s.Addr(), err)
	}
	return nil
}
