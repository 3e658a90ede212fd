# Least privilege for the Trousseau KMS plugin on one Transit key.
# No "create": with it, encrypt would silently create a missing key instead of
# failing loudly. Token renewal and lookup come from Vault's default policy.
path "{{.Mount}}/encrypt/{{.Key}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/decrypt/{{.Key}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/keys/{{.Key}}" {
  capabilities = ["read"]
}
