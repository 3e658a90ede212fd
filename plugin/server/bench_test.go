package server

import (
	"context"
	"slices"
	"testing"
	"time"

	kmsapi "k8s.io/kms/apis/v2"

	"github.com/trousseau-io/trousseau/plugin/kms/kmstest"
)

// BenchmarkStatusFromCache measures Status as the apiserver sees it: one
// gRPC round trip over the unix socket, answered from the cache.
func BenchmarkStatusFromCache(b *testing.B) {
	p := kmstest.New("fake")
	h := startServer(b, p, harnessOptions{waitKnown: true})
	ctx := context.Background()
	if _, err := h.client.Status(ctx, &kmsapi.StatusRequest{}); err != nil {
		b.Fatal(err)
	}
	before := p.StatusCalls()
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := h.client.Status(ctx, &kmsapi.StatusRequest{}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(p.StatusCalls()-before), "backend-calls")
}
