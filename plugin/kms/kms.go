// Package kms defines the seam between the KMS v2 gRPC server and a key
// management backend: the Provider interface and the error kinds that decide
// gRPC codes and health.
package kms

import (
	"context"
	"errors"
	"fmt"
)

// Provider is one external KMS. The server never knows which one.
//
// The server owns the status cache and the key_id handshake: it calls
// CurrentKeyID from a background loop, serves Status from the result, and
// passes the cached key_id back into Encrypt. A provider therefore encrypts
// with exactly the key version that Status reported, so Encrypt's key_id equals
// Status's key_id by construction (field case 14).
type Provider interface {
	// Name is a short, stable identifier used in the ciphertext format, logs
	// and metric labels, e.g. "vault-transit".
	Name() string
	// CurrentKeyID asks the backend which key encrypts now and whether the
	// plugin may use it (credentials valid, encrypt and decrypt permitted).
	// It returns the key_id of that key even when it also returns an error
	// that says what is wrong, if the key_id is known.
	CurrentKeyID(ctx context.Context) (keyID string, err error)
	// Encrypt wraps a DEK seed with the key that keyID names. keyID always
	// comes from an earlier CurrentKeyID of this provider.
	Encrypt(ctx context.Context, keyID string, plaintext []byte) (ciphertext []byte, err error)
	// Decrypt unwraps what Encrypt returned. keyID is the one stored with it.
	Decrypt(ctx context.Context, keyID string, ciphertext []byte) (plaintext []byte, err error)
	// Close releases background work such as token renewal.
	Close() error
}

// Kind classifies an error the way the apiserver and operators need it.
type Kind int

const (
	// Internal is a bug or an unexpected answer.
	Internal Kind = iota
	// InvalidInput is garbage or truncated ciphertext, or an unknown key_id:
	// the caller's data is wrong, the plugin stays healthy.
	InvalidInput
	// Unavailable is a backend that cannot be reached or answers 5xx/429.
	Unavailable
	// PermissionDenied is a backend that refuses our credentials or policy.
	PermissionDenied
	// NotFound is a missing key or mount.
	NotFound
	// DeadlineExceeded is a caller deadline that ran out.
	DeadlineExceeded
)

func (k Kind) String() string {
	switch k {
	case InvalidInput:
		return "invalid_input"
	case Unavailable:
		return "unavailable"
	case PermissionDenied:
		return "permission_denied"
	case NotFound:
		return "not_found"
	case DeadlineExceeded:
		return "deadline_exceeded"
	default:
		return "internal"
	}
}

// Error is an error with a Kind. Its message must never contain plaintext,
// seeds, tokens or secret IDs.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error of the given kind.
func Errorf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// KindOf returns the Kind of err, looking through wrapping. Context errors
// map to DeadlineExceeded; anything unclassified is Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return DeadlineExceeded
	}
	return Internal
}
