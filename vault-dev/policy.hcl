# Least privilege for the Trousseau KMS plugin on one Transit key.
# No "create": with it, encrypt would silently create a missing key instead of
# failing loudly. Bootstrap's role sets token_no_default_policy, so the token
# holds only these paths: the three self paths below replace what the plugin
# used from Vault's default policy (lookup on 401/403, renewal, and Status's
# capability check).
path "{{.Mount}}/encrypt/{{.Key}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/decrypt/{{.Key}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/keys/{{.Key}}" {
  capabilities = ["read"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "sys/capabilities-self" {
  capabilities = ["update"]
}
