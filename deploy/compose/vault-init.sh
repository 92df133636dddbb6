#!/bin/sh
# One-shot Vault setup for the compose demo: transit KEK, the proxy's
# policy, an AppRole whose ids land in $1, and the grants document.
set -eu
out=${1:?directory for role_id and secret_id}
here=$(dirname "$0")
vault secrets list | grep -q '^transit/' || vault secrets enable transit
vault read transit/keys/pgcloak-kek >/dev/null 2>&1 || vault write -f transit/keys/pgcloak-kek
vault policy write pgcloak-proxy "$here/pgcloak-policy.hcl"
vault policy write pgcloak-admin "$here/pgcloak-admin-policy.hcl"
vault auth list | grep -q '^approle/' || vault auth enable approle
# One AppRole for both the proxy and the one-shot key creation, to keep the
# demo small; in production give the proxy pgcloak-proxy only.
vault write auth/approle/role/pgcloak token_policies=pgcloak-proxy,pgcloak-admin token_ttl=1h token_max_ttl=24h
vault read -field=role_id auth/approle/role/pgcloak/role-id > "$out/role_id"
vault write -f -field=secret_id auth/approle/role/pgcloak/secret-id > "$out/secret_id"
chmod 0644 "$out/role_id" "$out/secret_id"
vault kv put secret/pgcloak/grants roles='[
  {"role": "doctor",  "read": ["ssn", "clinical"], "write": ["ssn", "clinical"]},
  {"role": "billing", "read": ["ssn"], "on_denied": "null"}
]'
echo "vault-init: done"
