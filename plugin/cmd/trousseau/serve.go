package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/trousseau-io/trousseau/plugin/config"
	"github.com/trousseau-io/trousseau/plugin/kms"
	"github.com/trousseau-io/trousseau/plugin/ops"
	"github.com/trousseau-io/trousseau/plugin/server"
	"github.com/trousseau-io/trousseau/plugin/transit"
)

// providerFactory builds the configured KMS provider. Tests swap it.
type providerFactory func(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (kms.Provider, error)

// buildProvider picks the provider from the one stanza that is set.
func buildProvider(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (kms.Provider, error) {
	switch {
	case cfg.Provider.Vault != nil:
		p, err := transit.New(ctx, *cfg.Provider.Vault, transit.Options{Logger: log, Registerer: reg})
		if err != nil {
			return nil, fmt.Errorf("set up the vault provider: %w", err)
		}
		return p, nil
	default:
		return nil, errors.New("no provider configured: add provider.vault")
	}
}

// newFlagSet declares the command line shared by serve and check-config.
func newFlagSet(name string, out io.Writer) (fs *flag.FlagSet, path *string, flags *config.Flags) {
	fs = flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	path = fs.String("config", "", "YAML config file (env "+config.EnvConfig+")")
	flags = config.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: trousseau %s --config FILE [flags]\n\n%s\n\nFlags:\n", name, config.Precedence)
		fs.PrintDefaults()
	}
	return fs, path, flags
}

// loadConfig parses the command line of serve and check-config and returns
// the validated configuration.
func loadConfig(name string, args []string, out io.Writer) (config.Config, error) {
	fs, path, flags := newFlagSet(name, out)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config.Config{}, err
		}
		return config.Config{}, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "trousseau %s: unexpected arguments %q\n", name, fs.Args())
		fs.Usage()
		return config.Config{}, errUsage
	}
	cfg, err := config.Check(*path, os.Environ(), flags)
	if err != nil {
		return config.Config{}, fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return cfg, nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	// Validate has already restricted the level to a name slog knows.
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationsAsText}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationsAsText logs every duration as "1.8ms" in both formats: JSON
// would otherwise print bare nanoseconds, which read as a unitless number.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// serve runs the plugin until SIGTERM, SIGINT or ctx ends. A configuration
// or listen error fails here, at startup; a backend that is down or refuses
// our credentials never does (field case 11): it shows in Status and /readyz.
func serve(ctx context.Context, args []string, logOut io.Writer, newProvider providerFactory) error {
	cfg, err := loadConfig("serve", args, logOut)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, logOut)
	for _, w := range cfg.Warnings() {
		log.Warn("INSECURE CONFIGURATION: " + w)
	}
	mode, err := cfg.Socket.FileMode()
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	provider, err := newProvider(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer provider.Close()

	srv, err := server.New(server.Options{
		Provider:        provider,
		Logger:          log,
		Registerer:      reg,
		RefreshInterval: cfg.Status.RefreshInterval.Duration,
		ShutdownGrace:   cfg.Socket.ShutdownGrace.Duration,
	})
	if err != nil {
		return err
	}
	sock, err := server.Listen(cfg.Socket.Path, mode)
	if err != nil {
		return fmt.Errorf("socket.path: %w", err)
	}
	if sock.RemovedStale {
		log.Info("removed stale socket left by a previous process", "socket", cfg.Socket.Path)
	}
	opsSrv, err := ops.Listen(cfg.Ops.Address, reg, func() (bool, string) {
		s := srv.Snapshot()
		return s.Healthy(), s.Healthz
	}, log)
	if err != nil {
		sock.Close()
		sock.Remove()
		return fmt.Errorf("ops.address: %w", err)
	}

	log.Info("trousseau starting", "version", version, "provider", provider.Name(),
		"socket", cfg.Socket.Path, "ops", opsSrv.Addr(), "refresh_interval", cfg.Status.RefreshInterval.Duration)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx, sock) })
	g.Go(func() error { return opsSrv.Serve(gctx) })
	err = g.Wait()
	log.Info("trousseau stopped")
	return err
}
