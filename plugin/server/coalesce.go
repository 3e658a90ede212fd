package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/plugin/kms"
)

// decryptFlights merges identical Decrypt calls that overlap in time into one
// provider call. After a restart the apiserver decodes its watch with 10
// workers and does not merge their cache misses, so without this one DEK seed
// costs up to 10 Vault requests (field case 16).
//
// Nothing is cached beyond the overlap: singleflight forgets a key as soon as
// its call returns, and the plaintext then lives only in the responses. The
// apiserver caches seeds itself; holding them here as well would add a second
// process memory where seeds sit, for no saving the apiserver's cache does not
// already give.
type decryptFlights struct {
	provider kms.Provider
	group    singleflight.Group
	// coalesced counts callers answered by a call another caller started.
	coalesced prometheus.Counter
	// waiting counts callers that have joined or started a flight and not yet
	// returned.
	waiting prometheus.Gauge
}

// decrypt returns provider.Decrypt(keyID, payload), sharing the call with
// every identical request in flight. Each caller waits only as long as its
// own ctx allows; leaving does not cancel the call for the others.
func (f *decryptFlights) decrypt(ctx context.Context, keyID string, payload []byte) ([]byte, error) {
	// led is written by the flight goroutine before it delivers the result,
	// so reading it after receiving from ch is ordered.
	led := false
	ch := f.group.DoChan(flightKey(keyID, payload), func() (any, error) {
		led = true
		fctx, cancel := flightContext(ctx)
		defer cancel()
		return f.provider.Decrypt(fctx, keyID, payload)
	})
	// DoChan has registered this caller with the flight by now.
	f.waiting.Inc()
	defer f.waiting.Dec()
	select {
	case r := <-ch:
		if r.Shared && !led {
			f.coalesced.Inc()
		}
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// flightKey identifies a provider call by exactly its inputs: the apiserver's
// annotations are not among them, so requests that differ only there are the
// same call. Sharing hands one caller's plaintext to another, so the key is a
// SHA-256 over both fields (length-prefixed, so no key_id/ciphertext split is
// ambiguous): equal keys mean equal inputs. It stays in memory and is never
// logged.
func flightKey(keyID string, payload []byte) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(keyID)))
	h.Write(n[:])
	h.Write([]byte(keyID))
	h.Write(payload)
	return string(h.Sum(nil))
}

// flightContext is the context of a shared provider call. It keeps the
// leader's values but drops its cancellation: the leader is only the first of
// several callers, and its deadline passing or its client hanging up must not
// fail the others. It is still bounded, so a backend that never answers
// cannot hold a flight open, with every later identical request joining it,
// for longer than the apiserver would wait: the KMS timeout from the leader's
// arrival, or the leader's own deadline if that is later (a client with a
// longer timeout than the apiserver's keeps it). A joiner arrives after the
// leader, so its own deadline may be a little later than the flight's; if
// the flight runs out first, the joiner gets its error and the next read
// starts a fresh flight.
func flightContext(leader context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(controlplane.KMSTimeout)
	if d, ok := leader.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(leader), deadline)
}
