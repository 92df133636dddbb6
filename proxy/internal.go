package proxy

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"
)

// internalQuery is a query the proxy runs on the session's own upstream
// connection (search_path, the catalog). Its results never reach the client.
type internalQuery struct {
	sql     string
	results [][][]string // per statement, rows of text values
	rows    [][]string
	err     error
	done    chan struct{}
}

func newInternalQuery(sql string) *internalQuery {
	return &internalQuery{sql: sql, done: make(chan struct{})}
}

func (iq *internalQuery) finished() bool {
	select {
	case <-iq.done:
		return true
	default:
		return false
	}
}

// handle consumes one server message of the query's response and closes
// done at ReadyForQuery.
func (iq *internalQuery) handle(typ byte, body []byte) {
	switch typ {
	case 'D':
		var dr pgproto3.DataRow
		if err := dr.Decode(body); err != nil {
			iq.fail(err)
			return
		}
		row := make([]string, len(dr.Values))
		for i, v := range dr.Values {
			row[i] = string(v)
		}
		iq.rows = append(iq.rows, row)
	case 'C':
		iq.results = append(iq.results, iq.rows)
		iq.rows = nil
	case 'E':
		var er pgproto3.ErrorResponse
		if er.Decode(body) == nil {
			iq.fail(errors.New(er.Code + ": " + er.Message))
		} else {
			iq.fail(errors.New("internal query failed"))
		}
	case 'Z':
		close(iq.done)
	}
}

func (iq *internalQuery) fail(err error) {
	if iq.err == nil {
		iq.err = err
	}
}
