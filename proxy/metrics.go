package proxy

import (
	"errors"

	"github.com/pgcloak/pgcloak/internal/metrics"
)

// countRefusal counts a statement the proxy refused, by its SQLSTATE.
func countRefusal(err error) {
	code := "XX000"
	var se *sqlError
	if errors.As(err, &se) {
		code = se.code
	}
	metrics.StatementsRefused.WithLabelValues(code).Inc()
}
