// Package keyid derives the KMS v2 key_id that Trousseau reports for a Vault
// Transit key version, and reads the version back out of it.
//
// The key_id is what the apiserver compares between Status and Encrypt and
// stores next to every DEK, so it must be stable for one key version, differ
// for every other (address, namespace, mount, key, version), and stay short
// (the apiserver allows at most 1024 bytes).
package keyid

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

const (
	transitPrefix = "transit-"
	hashLen       = 12 // hex characters: 48 bits, ample to separate the keys of one cluster
	versionSep    = "-v"
)

// FromTransit returns "transit-<12 hex of sha256(address|namespace|mount|key)>-v<version>".
// The address is normalised (scheme and host lowercased, trailing slash
// dropped) and namespace and mount lose surrounding slashes, so spelling
// differences in the configuration do not change the key_id and force a
// needless DEK rotation.
func FromTransit(address, namespace, mount, key string, version int) string {
	return ForTransitKey(address, namespace, mount, key).ID(version)
}

// TransitKey is the key_id of one Transit key without its version, so a
// provider hashes its configuration once instead of on every Encrypt.
type TransitKey string

// ForTransitKey returns the TransitKey whose ID(version) is
// FromTransit(address, namespace, mount, key, version).
func ForTransitKey(address, namespace, mount, key string) TransitKey {
	sum := sha256.Sum256([]byte(normalizeAddress(address) + "|" + strings.Trim(namespace, "/") + "|" +
		strings.Trim(mount, "/") + "|" + key))
	return TransitKey(transitPrefix + hex.EncodeToString(sum[:])[:hashLen])
}

// ID returns the key_id of version of the key.
func (k TransitKey) ID(version int) string {
	return string(k) + versionSep + strconv.Itoa(version)
}

// TransitVersion returns the Transit key version a key_id from FromTransit names.
func TransitVersion(id string) (int, error) {
	rest, ok := strings.CutPrefix(id, transitPrefix)
	if !ok {
		return 0, fmt.Errorf("key_id %q does not start with %q: it was not issued by the Vault Transit provider", id, transitPrefix)
	}
	hash, ver, ok := strings.Cut(rest, versionSep)
	if !ok || len(hash) != hashLen || !isLowerHex(hash) {
		return 0, fmt.Errorf("key_id %q is malformed: want transit-<%d hex>-v<version>", id, hashLen)
	}
	n, err := strconv.Atoi(ver)
	if err != nil || n < 1 || strconv.Itoa(n) != ver {
		return 0, fmt.Errorf("key_id %q has an invalid version %q: want a positive integer", id, ver)
	}
	return n, nil
}

func normalizeAddress(address string) string {
	address = strings.TrimSpace(address)
	u, err := url.Parse(address)
	if err != nil || u.Host == "" {
		return strings.ToLower(strings.TrimRight(address, "/"))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	return u.String()
}

func isLowerHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
