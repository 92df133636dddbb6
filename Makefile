GO ?= go

.PHONY: build test vet clients bench fuzz demo

build:
	$(GO) build -o bin/pgcloak ./cmd/pgcloak

vet:
	$(GO) vet ./...

# The client matrix's toolchains (pgjdbc, psycopg2, node-postgres): Debian
# packages when missing (as root), node modules from clients/node's lock file.
clients:
	bash clients/setup.sh

# The whole suite: unit tests, integration tests against a real PostgreSQL
# started by testenv, the psql tests and the client matrix.
test: vet clients
	$(GO) test -race -count=1 -timeout 45m ./...

# Throughput through pgcloak against PostgreSQL directly and PgBouncer, plain
# and encrypted (see BENCHMARKS.md); flags in BENCHFLAGS, e.g.
# make bench BENCHFLAGS="-json bench.json".
bench:
	$(GO) run ./bench $(BENCHFLAGS)

# Each fuzz target for a while (FUZZTIME=60s by default).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzAnalyze$$' -fuzztime $(FUZZTIME) ./sqlrewrite/
	$(GO) test -run '^$$' -fuzz '^FuzzClientMessages$$' -fuzztime $(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzInvariantNoPlaintext$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10x ./proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzRewriter$$' -fuzztime $(FUZZTIME) ./proxy/internal/copydata/

demo:
	$(GO) run ./cmd/pgcloak demo
