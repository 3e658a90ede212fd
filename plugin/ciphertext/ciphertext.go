// Package ciphertext defines Trousseau's own versioned envelope around a
// provider's ciphertext. The apiserver stores these bytes in etcd forever, so
// the format carries a version and the provider's name: a later format (for
// example a multi-KMS envelope) can coexist with v1 data, and data written by
// one provider is never handed to another.
//
// Format v1, byte by byte:
//
//	"tr" | 0x01 | len(provider) (1..MaxProviderName) | provider | payload (>= 1 byte)
//
// The whole encoding is at most MaxSize bytes, the apiserver's limit.
package ciphertext

import (
	"bytes"
	"fmt"

	"github.com/trousseau-io/trousseau/plugin/kms"
)

const (
	// MaxSize is the largest ciphertext the apiserver accepts from a KMS v2
	// plugin (encryptedDEKSourceMaxSize in k8s.io/apiserver).
	MaxSize = 1024
	// MaxProviderName bounds the provider name, which is stored in every
	// ciphertext.
	MaxProviderName = 32
	// V1 is the first format version.
	V1 byte = 0x01

	headerSize = 4 // magic(2) + version(1) + name length(1)
)

var magic = []byte("tr")

// Encode wraps a provider's payload in format v1. Errors here mean a provider
// bug (an invalid name or a payload that does not fit), so they are Internal.
func Encode(provider string, payload []byte) ([]byte, error) {
	if err := checkProviderName(provider); err != nil {
		return nil, kms.Errorf(kms.Internal, "encode ciphertext: %w", err)
	}
	if len(payload) == 0 {
		return nil, kms.Errorf(kms.Internal, "encode ciphertext: provider %s returned an empty ciphertext", provider)
	}
	n := headerSize + len(provider) + len(payload)
	if n > MaxSize {
		return nil, kms.Errorf(kms.Internal, "encode ciphertext: %d bytes from provider %s exceed the apiserver limit of %d bytes", n, provider, MaxSize)
	}
	b := make([]byte, 0, n)
	b = append(b, magic...)
	b = append(b, V1, byte(len(provider)))
	b = append(b, provider...)
	return append(b, payload...), nil
}

// Decode splits an encoding into the provider name and its payload. Anything
// that is not a well-formed v1 encoding is an InvalidInput error: the data is
// wrong, the plugin is healthy. Decode accepts exactly the bytes Encode
// produces, so Encode(Decode(b)) == b.
func Decode(b []byte) (provider string, payload []byte, err error) {
	if len(b) > MaxSize {
		return "", nil, kms.Errorf(kms.InvalidInput, "ciphertext is %d bytes, larger than the %d-byte limit", len(b), MaxSize)
	}
	if len(b) < len(magic) || !bytes.Equal(b[:len(magic)], magic) {
		return "", nil, kms.Errorf(kms.InvalidInput, "ciphertext was not written by trousseau (missing %q prefix)", magic)
	}
	if len(b) < headerSize {
		return "", nil, kms.Errorf(kms.InvalidInput, "ciphertext is truncated: %d bytes, the header alone is %d", len(b), headerSize)
	}
	if v := b[2]; v != V1 {
		return "", nil, kms.Errorf(kms.InvalidInput, "ciphertext format version %d is unknown to this plugin (it reads version %d): upgrade trousseau", v, V1)
	}
	nameLen := int(b[3])
	if len(b) < headerSize+nameLen+1 {
		return "", nil, kms.Errorf(kms.InvalidInput, "ciphertext is truncated: %d bytes cannot hold a %d-byte provider name and a payload", len(b), nameLen)
	}
	provider = string(b[headerSize : headerSize+nameLen])
	if err := checkProviderName(provider); err != nil {
		return "", nil, kms.Errorf(kms.InvalidInput, "ciphertext is corrupt: %w", err)
	}
	payload = b[headerSize+nameLen:]
	return provider, payload, nil
}

// checkProviderName allows lowercase letters, digits and '-', so a name is
// safe to print in errors and logs.
func checkProviderName(name string) error {
	if name == "" || len(name) > MaxProviderName {
		return fmt.Errorf("provider name must be 1 to %d bytes long, got %d", MaxProviderName, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("provider name may contain only a-z, 0-9 and '-', found byte 0x%02x", c)
		}
	}
	return nil
}
