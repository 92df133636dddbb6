# --- pgcloak-admin: what the operator's `pgcloak keys`, `kek rewrap`,
# `policy check`, `encrypt`/`reencrypt`/`decrypt` need, in addition ---
path "secret/data/pgcloak/keys/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/pgcloak/keys"   { capabilities = ["list"] }
path "secret/metadata/pgcloak/keys/*" { capabilities = ["read", "list"] }
# keys destroy: permanently destroy the old versions of a key's document.
path "secret/destroy/pgcloak/keys/*"  { capabilities = ["update"] }
path "transit/encrypt/pgcloak-kek"    { capabilities = ["update"] }
path "transit/decrypt/pgcloak-kek"    { capabilities = ["update"] }
path "secret/data/pgcloak/grants"     { capabilities = ["read"] }
