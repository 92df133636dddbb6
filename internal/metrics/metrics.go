// Package metrics owns pgcloak's Prometheus collectors: every metric the
// proxy exports is declared here, so that their names, which the Grafana
// dashboard and the alert rules in deploy/ depend on, are one list. The
// collectors are the program's only global state, as Prometheus collectors
// are meant to be; label values are bounded sets (outcomes, SQLSTATEs,
// statement kinds, key names from the policy), never client input.
package metrics

import (
	"regexp"
	"runtime"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Namespace prefixes every metric name.
const Namespace = "pgcloak"

// Sessions.
var (
	SessionsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "sessions_total", Help: "Client sessions accepted.",
	})
	SessionsActive = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "sessions_active", Help: "Client sessions open now.",
	})
	// SessionsEnded counts ended sessions by outcome (see the Session*
	// constants).
	SessionsEnded = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "sessions_ended_total", Help: "Client sessions ended, by outcome.",
	}, []string{"outcome"})
	LoginFailures = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "login_failures_total", Help: "Logins the proxy refused while terminating SCRAM (wrong password, unknown role, channel binding).",
	})
)

// Outcomes of SessionsEnded.
const (
	SessionClosed         = "closed"          // the client said Terminate or closed its end
	SessionError          = "error"           // a protocol or I/O error ended it
	SessionUpstreamFailed = "upstream_failed" // PostgreSQL could not be reached or ended it
	SessionRefused        = "refused"         // refused before it started: max_connections, TLS required, login failed
	SessionIdleTimeout    = "idle_timeout"    // closed by server.idle_timeout
	SessionDrained        = "drained"         // closed by a graceful shutdown
)

// Statements.
var (
	// Statements counts statements by kind (select, insert, update,
	// delete, copy, ddl, other) and outcome (see the Statement*
	// constants).
	Statements = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "statements_total", Help: "Statements seen, by kind and outcome.",
	}, []string{"kind", "outcome"})
	// StatementsRefused counts refusals by SQLSTATE.
	StatementsRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "statements_refused_total", Help: "Statements the proxy refused before PostgreSQL saw them, by SQLSTATE.",
	}, []string{"sqlstate"})
	ResultErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "result_errors_total", Help: "Results cut short because a value could not be decrypted.",
	})
)

// Outcomes of Statements.
const (
	StatementPassed    = "passed"    // sent to PostgreSQL as the client wrote it
	StatementRewritten = "rewritten" // sent rewritten (values encrypted, searches or results mapped)
	StatementRefused   = "refused"   // refused by the proxy
)

// Values counts values by key and operation (see the Value* constants).
var Values = promauto.NewCounterVec(prometheus.CounterOpts{
	Namespace: Namespace, Name: "values_total", Help: "Values of encrypted columns encrypted, decrypted or withheld (on_denied), by key.",
}, []string{"key", "operation"})

// Operations of Values.
const (
	ValueEncrypted = "encrypted"
	ValueDecrypted = "decrypted"
	ValueDenied    = "denied"
)

// Traffic and latency.
var (
	// ProxyLatency is the time the proxy adds: from a client message's
	// arrival to its forward (direction to_server), and from a server
	// message's arrival to its forward (to_client).
	ProxyLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "proxy_latency_seconds",
		Help:    "Time the proxy adds to a message between its arrival and its forward, by direction.",
		Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2, 0.25, 1},
	}, []string{"direction"})
	// Bytes counts bytes by direction: from_client, to_client,
	// to_server, from_server.
	Bytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "bytes_total", Help: "Bytes read and written, by direction.",
	}, []string{"direction"})
	UpstreamConnectErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "upstream_connect_errors_total", Help: "Connections to PostgreSQL that could not be opened.",
	})
	UpstreamConnectSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "upstream_connect_seconds", Help: "Time to open a connection to PostgreSQL (TCP, TLS).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
)

// Directions of ProxyLatency and Bytes.
const (
	ToServer   = "to_server"
	ToClient   = "to_client"
	FromClient = "from_client"
	FromServer = "from_server"
)

// Key store and grants.
var (
	// KeystoreCalls counts requests to the key store by key and outcome
	// (ok, error).
	KeystoreCalls = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "keystore_calls_total", Help: "Key store requests for a key, by outcome.",
	}, []string{"key", "outcome"})
	KeyCacheHits = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "key_cache_hits_total", Help: "Key lookups answered from the proxy's cache, by key.",
	}, []string{"key"})
	// VaultTokenRenewals counts renewals of the Vault login by outcome
	// (ok, failed, relogin).
	VaultTokenRenewals = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "vault_token_renewals_total", Help: "Renewals of the proxy's Vault token, by outcome.",
	}, []string{"outcome"})
	// KeystoreUp is 1 while the last key store request succeeded.
	KeystoreUp = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "keystore_up", Help: "1 when the key store answered the last request, 0 when it failed.",
	})
)

// Outcomes shared by several metrics.
const (
	OK     = "ok"
	Error  = "error"
	Failed = "failed"
)

// Reloads.
var (
	CatalogReloads = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "catalog_reloads_total", Help: "Catalog snapshot loads, by outcome.",
	}, []string{"outcome"})
	GrantsReloads = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "grants_reloads_total", Help: "Reloads of the role grants from Vault, by outcome.",
	}, []string{"outcome"})
	PolicyReloads = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "policy_reloads_total", Help: "Reloads of the configuration file (SIGHUP or file change), by outcome.",
	}, []string{"outcome"})
)

// Audit.
var (
	AuditRecords = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "audit_records_total", Help: "Audit records written.",
	})
	AuditDropped = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "audit_dropped_total", Help: "Audit records dropped because the buffer was full (audit.on_full: drop; with block, those of a session the proxy was ending).",
	})
	AuditErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "audit_write_errors_total", Help: "Audit records that could not be written to the output.",
	})
)

var buildInfo = promauto.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: Namespace, Name: "build_info", Help: "Always 1; the labels say which build runs.",
}, []string{"version", "revision", "goversion"})

// SetBuildInfo publishes the running build.
func SetBuildInfo(version, revision string) {
	buildInfo.WithLabelValues(version, revision, runtime.Version()).Set(1)
}

// all is every collector above, for Names.
var all = []prometheus.Collector{
	SessionsTotal, SessionsActive, SessionsEnded, LoginFailures,
	Statements, StatementsRefused, ResultErrors, Values,
	ProxyLatency, Bytes, UpstreamConnectErrors, UpstreamConnectSeconds,
	KeystoreCalls, KeyCacheHits, VaultTokenRenewals, KeystoreUp,
	CatalogReloads, GrantsReloads, PolicyReloads,
	AuditRecords, AuditDropped, AuditErrors, buildInfo,
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists the names of every metric pgcloak exports, sorted, as a
// dashboard or an alert rule may use them (histograms add _bucket, _sum and
// _count).
func Names() []string {
	var names []string
	for _, c := range all {
		ch := make(chan *prometheus.Desc, 1)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				names = append(names, m[1])
			}
		}
	}
	sort.Strings(names)
	return names
}
