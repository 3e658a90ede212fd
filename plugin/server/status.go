package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trousseau-io/trousseau/plugin/kms"
)

const (
	// unknownKeyID is reported before the first successful CurrentKeyID: the
	// apiserver rejects an empty key_id, and healthz already says why.
	unknownKeyID = "unknown"
	// maxHealthzLen only guards against a runaway backend message: the
	// reason lands in the apiserver's healthz text, and our own reasons,
	// fix included, are written to fit well inside it.
	maxHealthzLen = 512
	// maxRefreshTimeout bounds one CurrentKeyID call.
	maxRefreshTimeout = 5 * time.Second
	// minUnhealthyInterval keeps a failing backend from being hammered.
	minUnhealthyInterval = 2 * time.Second
)

// Snapshot is the cached answer to Status.
type Snapshot struct {
	// KeyID is the last key_id the provider reported, "unknown" before any.
	KeyID string
	// Healthz is "ok" or a short reason naming the provider.
	Healthz string
	// Known is true once the provider has reported a key_id.
	Known bool
}

// Healthy reports whether the last refresh succeeded.
func (s Snapshot) Healthy() bool { return s.Healthz == "ok" }

// statusCache serves Status from memory and refreshes it from the provider in
// one background loop, so backend load is bounded by the refresh interval no
// matter how often the apiserver (or its /healthz probes) calls Status.
type statusCache struct {
	provider kms.Provider
	interval time.Duration
	timeout  time.Duration
	healthy  prometheus.Gauge
	log      *slog.Logger

	// inflight admits one CurrentKeyID at a time. A provider that ignores
	// its context keeps the slot, and later refreshes report that instead of
	// piling up goroutines against a stuck backend.
	inflight chan struct{}

	mu   sync.Mutex
	snap Snapshot
}

func newStatusCache(p kms.Provider, interval time.Duration, healthy prometheus.Gauge, log *slog.Logger) *statusCache {
	return &statusCache{
		provider: p,
		log:      log,
		interval: interval,
		timeout:  min(interval, maxRefreshTimeout),
		healthy:  healthy,
		inflight: make(chan struct{}, 1),
		snap: Snapshot{
			KeyID:   unknownKeyID,
			Healthz: truncate(p.Name() + ": starting, key status not checked yet"),
		},
	}
}

// get returns the cached status without touching the backend.
func (c *statusCache) get() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// run refreshes until ctx ends: every interval while healthy, a fifth of it
// (at least 2s, at most interval) while unhealthy, so recovery shows quickly.
func (c *statusCache) run(ctx context.Context) {
	for {
		c.refresh(ctx)
		wait := c.interval
		if !c.get().Healthy() {
			wait = min(c.interval, max(c.interval/5, minUnhealthyInterval))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh asks the provider once and updates the cache.
func (c *statusCache) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// A refresh already in flight (the loop and an explicit RefreshStatus
	// can overlap) is waited for, so the caller sees a fresh answer. Only a
	// provider call stuck past the whole timeout is reported as a failure.
	select {
	case c.inflight <- struct{}{}:
	case <-ctx.Done():
		c.record("", kms.Errorf(kms.Unavailable, "key status request still running after %s: the backend is not answering", c.timeout))
		return
	}
	type result struct {
		keyID string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-c.inflight }()
		id, err := c.provider.CurrentKeyID(ctx)
		done <- result{id, err}
	}()
	select {
	case r := <-done:
		c.record(r.keyID, r.err)
	case <-ctx.Done():
		c.record("", kms.Errorf(kms.DeadlineExceeded, "key status request timed out after %s", c.timeout))
	}
}

// record stores a refresh result. A key_id that comes with an error still
// replaces the cached one: the provider knows the key but cannot use it.
// Changes of health or key are logged once, not on every refresh.
func (c *statusCache) record(keyID string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.snap
	defer func() {
		switch after := c.snap; {
		case after.Healthz != before.Healthz && !after.Healthy():
			c.log.Warn("key status unhealthy", "healthz", after.Healthz, "key_id", after.KeyID)
		case after.Healthz != before.Healthz:
			c.log.Info("key status healthy", "key_id", after.KeyID)
		case after.KeyID != before.KeyID:
			c.log.Info("key changed", "key_id", after.KeyID, "previous_key_id", before.KeyID)
		}
	}()
	if keyID != "" {
		c.snap.KeyID = keyID
		c.snap.Known = true
	}
	switch {
	case err != nil:
		c.snap.Healthz = truncate(c.provider.Name() + ": " + err.Error())
	case keyID == "":
		c.snap.Healthz = truncate(c.provider.Name() + ": reported an empty key_id (provider bug)")
	default:
		c.snap.Healthz = "ok"
	}
	if c.snap.Healthz == "ok" {
		c.healthy.Set(1)
	} else {
		c.healthy.Set(0)
	}
}

// truncate makes s one line of at most maxHealthzLen bytes.
func truncate(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxHealthzLen {
		return s
	}
	cut := maxHealthzLen - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...", s[:cut])
}
