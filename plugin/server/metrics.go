package server

import (
	"context"
	"log/slog"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type metrics struct {
	rpcDuration      *prometheus.HistogramVec
	healthy          prometheus.Gauge
	decryptCoalesced prometheus.Counter
	decryptWaiting   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trousseau_rpc_duration_seconds",
			Help: "Duration of KMS v2 gRPC calls served to the apiserver, by method and gRPC code.",
			// From cached Status (sub-millisecond) to the apiserver's 3s KMS timeout.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 5},
		}, []string{"method", "code"}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trousseau_healthy",
			Help: "1 if the last key status refresh succeeded, else 0.",
		}),
		decryptCoalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trousseau_decrypt_coalesced_total",
			Help: "Decrypt calls answered by the provider call of an identical Decrypt already in flight, i.e. Vault requests saved.",
		}),
		decryptWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trousseau_decrypt_waiting",
			Help: "Decrypt calls currently waiting on a provider call, their own or a shared one.",
		}),
	}
	for _, c := range []prometheus.Collector{m.rpcDuration, m.healthy, m.decryptCoalesced, m.decryptWaiting} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// interceptor records every call's duration and code, and logs it with the
// request uid so an apiserver log line can be matched to ours. It never logs
// request or response bodies: they carry seeds.
func (m *metrics) interceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		elapsed := time.Since(start)
		method := path.Base(info.FullMethod)
		code := status.Code(err)
		m.rpcDuration.WithLabelValues(method, code.String()).Observe(elapsed.Seconds())

		attrs := []any{"method", method, "code", code.String(), "duration", elapsed}
		// Encrypt and Decrypt carry the apiserver's uid; Status has none.
		if r, ok := req.(interface{ GetUid() string }); ok {
			attrs = append(attrs, "uid", r.GetUid())
		}
		switch {
		case err != nil:
			log.WarnContext(ctx, "kms call failed", append(attrs, "error", status.Convert(err).Message())...)
		case method == "Status":
			// The apiserver polls Status constantly; keep it out of info logs.
			log.DebugContext(ctx, "kms call", attrs...)
		default:
			log.InfoContext(ctx, "kms call", attrs...)
		}
		return resp, err
	}
}
