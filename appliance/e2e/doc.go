// Package e2e proves the whole appliance end to end, with data read from
// etcd: every Secret is a trousseau KMS v2 envelope, rotation and migration
// move everything onto the new key, and the field-reported failures (config
// flip, plugin kill -9, Vault outage, cold start, start order) are survived.
// The tests run behind the e2e build tag (`go tool mage e2e`) against the
// runtime TROUSSEAU_RUNTIME selects, and stop everything they start.
package e2e
