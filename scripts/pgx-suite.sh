#!/usr/bin/env bash
# Runs pgx's own test suite (github.com/jackc/pgx/v5 at PGX_VERSION) through
# pgcloak with an empty policy, against the PostgreSQL at PGHOST:PGPORT
# (superuser, trust), and prints pass/fail/skip per package. Exit status 1
# when a test fails. Needs the Go module proxy; takes about 4 minutes.
#
#   scripts/pgx-suite.sh            # PGX_VERSION=v5.12.0, PostgreSQL on 127.0.0.1:5432
#   PGX_PACKAGES=./pgtype scripts/pgx-suite.sh
set -euo pipefail
PGX_VERSION=${PGX_VERSION:-v5.12.0}
PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
proxy_port=${PROXY_PORT:-6543}
db=pgx_suite_$$
tricky=' tricky, '"'"' } " \ test user '

cleanup() {
	[ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null || true
	psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
	psql -X -q -d postgres -f - >/dev/null 2>&1 <<<"DROP ROLE IF EXISTS \"${tricky//\"/\"\"}\";" || true
	rm -rf "$work"
}
trap cleanup EXIT

dir=$(cd "$root" && go mod download -json "github.com/jackc/pgx/v5@$PGX_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
cp -r "$dir" "$work/pgx" && chmod -R u+w "$work/pgx"
(cd "$root" && go build -o "$work/pgcloak" ./cmd/pgcloak)

# What pgx's suite expects of its database (its testsetup/ and CONTRIBUTING.md).
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION hstore" -c "CREATE EXTENSION ltree" -c "CREATE DOMAIN uint64 AS numeric(20,0)"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -f - <<<"CREATE ROLE \"${tricky//\"/\"\"}\" SUPERUSER LOGIN PASSWORD 'secret';"

cat >"$work/pgcloak.yaml" <<YAML
server:   {listen: 127.0.0.1:$proxy_port, tls: {mode: disable}}
upstream: {address: $PGHOST:$PGPORT, tls: {mode: disable}}
keystore: {provider: local, local: {path: $work/keys.json, master_key_env: PGCLOAK_MASTER_KEY}}
policy:
  roles: [{role: $PGUSER, read: [], server_side_code: allow}]
YAML
PGCLOAK_MASTER_KEY=$(head -c32 /dev/urandom | base64) "$work/pgcloak" serve --config "$work/pgcloak.yaml" 2>"$work/pgcloak.log" &
proxy_pid=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$proxy_port) 2>/dev/null && break; sleep 0.2; done

export PGX_TEST_DATABASE="host=127.0.0.1 port=$proxy_port user=$PGUSER dbname=$db sslmode=disable"
export PGX_TEST_TCP_CONN_STRING="$PGX_TEST_DATABASE"
status=0
(cd "$work/pgx" && go test ${PGX_PACKAGES:-./...} -count=1 -p 1 -json >"$work/pgx.json") || status=$?
python3 - "$work/pgx.json" <<'PY'
import json, sys, collections
counts = collections.defaultdict(collections.Counter)
fails, skips = [], []
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("Test") and e.get("Action") in ("pass", "fail", "skip"):
        pkg = e["Package"].replace("github.com/jackc/pgx/v5", ".")
        counts[pkg][e["Action"]] += 1
        if e["Action"] == "fail":
            fails.append(pkg + " " + e["Test"])
        if e["Action"] == "skip":
            skips.append(pkg + " " + e["Test"])
total = collections.Counter()
for pkg in sorted(counts):
    total += counts[pkg]
    print("%-24s pass %4d  fail %3d  skip %3d" % (pkg, counts[pkg]["pass"], counts[pkg]["fail"], counts[pkg]["skip"]))
print("%-24s pass %4d  fail %3d  skip %3d" % ("TOTAL", total["pass"], total["fail"], total["skip"]))
for s in skips:
    print("skip", s)
for f in fails:
    print("FAIL", f)
PY
echo "pgcloak log lines at warn or above / refusals:"
grep -E 'level=(WARN|ERROR)|refused' "$work/pgcloak.log" | sed 's/^/  /' | head -20 || true
exit $status
