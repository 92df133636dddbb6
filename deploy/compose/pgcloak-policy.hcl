# Vault policies for pgcloak (README, "Vault"): the proxy only reads.

# --- pgcloak-proxy: what `pgcloak serve` needs ---
# Read each key's document (its keyset, wrapped by the KEK).
path "secret/data/pgcloak/keys/*"   { capabilities = ["read"] }
# Unwrap keysets with the KEK.
path "transit/decrypt/pgcloak-kek"  { capabilities = ["update"] }
# Read the role → keys grants document.
path "secret/data/pgcloak/grants"   { capabilities = ["read"] }
