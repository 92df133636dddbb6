#!/usr/bin/env bash
# Prepares the client matrix (proxy/clients_test.go): installs from Debian
# what is missing of a JDK, pgjdbc, psycopg2 and node/npm (as root, or with
# passwordless sudo), then node-postgres into node/node_modules from
# node/package-lock.json. `make clients` runs it, and `make test` runs that.
#
# Without the rights to install, it says what is missing and goes on: the
# matrix then skips those clients, or fails them under PGCLOAK_TEST_REQUIRE=1
# (as CI runs), and so does this script.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
/usr/bin/python3 -c 'import psycopg2' >/dev/null 2>&1 || missing+=(python3-psycopg2)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

fail() {
	echo "clients/setup.sh: $*" >&2
	if [ "${PGCLOAK_TEST_REQUIRE:-}" = 1 ]; then exit 1; fi
	echo "clients/setup.sh: going on; the client matrix skips what is missing" >&2
}

if [ ${#missing[@]} -gt 0 ]; then
	sudo=()
	if [ "$(id -u)" != 0 ]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			sudo=(unavailable)
		fi
	fi
	if [ "${sudo[*]}" = unavailable ]; then
		fail "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}"
	else
		echo "clients/setup.sh: apt-get install ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
			fail "apt-get install ${missing[*]} failed"
		fi
	fi
fi

# node-postgres, pinned by the lock file; again only when the lock file
# changed since the last install.
if command -v npm >/dev/null 2>&1; then
	if [ ! -f node/node_modules/.package-lock.json ] || [ node/package-lock.json -nt node/node_modules/.package-lock.json ]; then
		echo "clients/setup.sh: npm ci in clients/node"
		if ! (cd node && npm ci --no-audit --no-fund --loglevel=error); then
			fail "npm ci in clients/node failed"
		fi
	fi
fi
