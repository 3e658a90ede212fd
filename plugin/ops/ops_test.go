package ops

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
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

func TestEndpointsReportLivenessReadinessAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "trousseau_healthy", Help: "h"})
	reg.MustRegister(g)
	var ready atomic.Bool
	srv, err := Listen("127.0.0.1:0", reg, func() (bool, string) {
		if ready.Load() {
			return true, "ok"
		}
		return false, "vault-transit: permission denied on transit/keys/kubernetes"
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	base := "http://" + srv.Addr()

	if code, _ := get(t, base+"/livez"); code != http.StatusOK {
		t.Fatalf("/livez = %d while the backend is down, want 200", code)
	}
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "permission denied") {
		t.Fatalf("/readyz = %d %q, want 503 with the reason", code, body)
	}
	ready.Store(true)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/readyz = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "trousseau_healthy") {
		t.Fatalf("/metrics = %d, body lacks trousseau_healthy:\n%s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestFieldCase11BadOpsAddressFailsAtStartupWithAClearMessage(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		name, addr, want string
	}{
		{"missing port", "127.0.0.1", "must be host:port"},
		{"port in use", busy.Addr().String(), "bind ops address " + busy.Addr().String()},
		{"unknown host", "no-such-host.invalid:8787", "bind ops address no-such-host.invalid:8787"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := Listen(tc.addr, prometheus.NewRegistry(), func() (bool, string) { return true, "ok" }, nil)
			if err == nil {
				srv.lis.Close()
				t.Fatalf("Listen(%q) succeeded", tc.addr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}
