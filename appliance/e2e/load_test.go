//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newSecret(ns, name, value string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data:       map[string][]byte{"value": []byte(value)},
	}
}

// namespace creates a namespace for one test (idempotent).
func namespace(t *testing.T, name string) string {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return name
}

func probeNamespace(context.Context) string { return metav1.NamespaceDefault }

// seed stores n Secrets named prefix-i and returns their values.
func seed(t *testing.T, ns, prefix string, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < n; i++ {
		name, value := fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("v-%d-%d", i, rand.Int64())
		if _, err := cs.CoreV1().Secrets(ns).Create(context.Background(), newSecret(ns, name, value), metav1.CreateOptions{}); err != nil {
			t.Fatalf("seed Secret %s/%s: %v", ns, name, err)
		}
		out[name] = value
	}
	return out
}

// load writes new Secrets and reads existing ones until stopped, recording
// every acknowledged write and every failure with its time.
type load struct {
	ns       string
	existing map[string]string
	stop     chan struct{}
	wg       sync.WaitGroup

	mu        sync.Mutex
	acked     map[string]string
	writeErrs []timedErr
	readErrs  []timedErr
	lastWrite time.Time // last acknowledged write
	maxCall   time.Duration
	writes    atomic.Int64
	reads     atomic.Int64
}

type timedErr struct {
	at  time.Time
	err error
}

// callTimeout is longer than any single apiserver call should take; a call
// that needs it counts as hanging.
const callTimeout = 30 * time.Second

// The load's pace per worker: steady traffic, without piling up so many
// Secrets that later migrations dominate the run.
const (
	writeInterval = 100 * time.Millisecond
	readInterval  = 50 * time.Millisecond
)

func startLoad(ns string, existing map[string]string, writers, readers int) *load {
	l := &load{ns: ns, existing: existing, stop: make(chan struct{}), acked: map[string]string{}}
	names := make([]string, 0, len(existing))
	for n := range existing {
		names = append(names, n)
	}
	for w := 0; w < writers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				name, value := fmt.Sprintf("load-%d-%d-%d", w, i, time.Now().UnixNano()), fmt.Sprintf("%d", rand.Int64())
				err := l.call(func(ctx context.Context) error {
					_, err := cs.CoreV1().Secrets(ns).Create(ctx, newSecret(ns, name, value), metav1.CreateOptions{})
					return err
				})
				l.mu.Lock()
				if err != nil {
					l.writeErrs = append(l.writeErrs, timedErr{time.Now(), err})
				} else {
					l.acked[name] = value
					l.lastWrite = time.Now()
				}
				l.mu.Unlock()
				l.writes.Add(1)
				time.Sleep(writeInterval)
			}
		}()
	}
	for r := 0; r < readers && len(names) > 0; r++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				name := names[rand.IntN(len(names))]
				err := l.call(func(ctx context.Context) error {
					s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
					if err == nil && string(s.Data["value"]) != existing[name] {
						err = fmt.Errorf("Secret %s read back a different value", name)
					}
					return err
				})
				if err != nil {
					l.mu.Lock()
					l.readErrs = append(l.readErrs, timedErr{time.Now(), err})
					l.mu.Unlock()
				}
				l.reads.Add(1)
				time.Sleep(readInterval)
			}
		}()
	}
	return l
}

func (l *load) call(f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	d := time.Since(start)
	l.mu.Lock()
	if d > l.maxCall {
		l.maxCall = d
	}
	l.mu.Unlock()
	return err
}

// lastAck is when the last write was acknowledged.
func (l *load) lastAck() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastWrite
}

func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// verifyAcked reads back every acknowledged write: nothing acknowledged may
// be lost.
func (l *load) verifyAcked(t *testing.T) {
	t.Helper()
	for name, value := range l.acked {
		s, err := cs.CoreV1().Secrets(l.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("acknowledged write %s/%s is not readable: %v", l.ns, name, err)
			continue
		}
		if !bytes.Equal(s.Data["value"], []byte(value)) {
			t.Errorf("acknowledged write %s/%s reads back a different value", l.ns, name)
		}
	}
}

func (l *load) summary(t *testing.T) {
	t.Helper()
	t.Logf("load: %d writes (%d acknowledged, %d failed), %d reads (%d failed), slowest call %s",
		l.writes.Load(), len(l.acked), len(l.writeErrs), l.reads.Load(), len(l.readErrs), l.maxCall.Round(time.Millisecond))
	for _, e := range first(l.writeErrs, 3) {
		t.Logf("  write error at %s: %v", e.at.Format("15:04:05.000"), e.err)
	}
	for _, e := range first(l.readErrs, 3) {
		t.Logf("  read error at %s: %v", e.at.Format("15:04:05.000"), e.err)
	}
}

func first[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}
