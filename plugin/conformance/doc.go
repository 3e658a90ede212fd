// Package conformance proves the plugin against the apiserver's own KMS v2
// client: k8s.io/apiserver's encryptionconfig loader and envelope
// transformer, talking over a unix socket to the real server backed by a real
// dev Vault. It holds tests only.
package conformance
