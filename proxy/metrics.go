package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the package's only global state, as Prometheus collectors
// are meant to be.
var (
	metricSessions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "pgcloak_sessions_total", Help: "Client sessions accepted.",
	})
	metricActive = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "pgcloak_sessions_active", Help: "Client sessions open now.",
	})
	metricRefused = promauto.NewCounter(prometheus.CounterOpts{
		Name: "pgcloak_statements_refused_total", Help: "Statements the proxy refused before PostgreSQL saw them.",
	})
	metricLoginFailures = promauto.NewCounter(prometheus.CounterOpts{
		Name: "pgcloak_login_failures_total", Help: "Logins the proxy refused while terminating SCRAM (wrong password, unknown role, channel binding).",
	})
	metricResultErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "pgcloak_result_errors_total", Help: "Results cut short because a value could not be decrypted.",
	})
)
