package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Clientset is an admin client for the runtime's apiserver.
// The runtime writes the kubeconfig when the stack starts and removes it on
// down, so a missing file means the stack is not running.
func Clientset(r Runtime) (*kubernetes.Clientset, error) {
	if _, err := os.Stat(r.Kubeconfig()); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the %s stack is not running (there is no kubeconfig at %s): start it with `go tool mage demo`",
			r.Name(), r.Kubeconfig())
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", r.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w. Fix: `go tool mage demo` rewrites it", r.Kubeconfig(), err)
	}
	// Migrations and load tests issue many requests; the default 5 QPS
	// would make them crawl.
	cfg.QPS, cfg.Burst = 200, 400
	return kubernetes.NewForConfig(cfg)
}

// APIServerMetrics returns the apiserver's /metrics text.
func APIServerMetrics(ctx context.Context, cs kubernetes.Interface) (string, error) {
	b, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("read apiserver /metrics: %w", err)
	}
	return string(b), nil
}

// KeyIDHash is how the apiserver labels a key_id in its metrics.
func KeyIDHash(keyID string) string {
	sum := sha256.Sum256([]byte(keyID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Metric names the apiserver labels with key_id_hash.
const (
	// MetricKeyIDUsed counts transformations per key_id and
	// transformation_type (to_storage, from_storage).
	MetricKeyIDUsed = "apiserver_envelope_encryption_key_id_hash_total"
	// MetricKeyIDFromStatus is set when a Status RPC returned the key_id.
	MetricKeyIDFromStatus = "apiserver_envelope_encryption_key_id_hash_status_last_timestamp_seconds"
)

// MetricHasKeyID reports whether a series of metric in the apiserver's
// /metrics text carries sha256(keyID) and every extra label (e.g.
// `transformation_type="to_storage"`).
func MetricHasKeyID(metrics, metric, keyID string, labels ...string) bool {
	want := append([]string{`key_id_hash="` + KeyIDHash(keyID) + `"`}, labels...)
next:
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		return true
	}
	return false
}

// SumMetric adds up every sample of metric (a counter or a histogram's
// _count) in Prometheus text whose labels contain all of labels, e.g.
// SumMetric(text, "trousseau_rpc_duration_seconds_count", `method="Decrypt"`).
func SumMetric(text, metric string, labels ...string) float64 {
	var sum float64
next:
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// PluginMetrics returns the plugin's /metrics text from its ops endpoint.
func PluginMetrics(ctx context.Context, r Runtime) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.PluginOps()+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("read plugin metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("read plugin metrics: %s %v", resp.Status, err)
	}
	return string(b), nil
}
