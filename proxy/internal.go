package proxy

import (
	"errors"

	"github.com/pgcloak/pgcloak/proxy/internal/pipeline"
	"github.com/pgcloak/pgcloak/proxy/internal/wire"

	"github.com/jackc/pgx/v5/pgproto3"
)

// internalQuery is a query the proxy runs on the session's own upstream
// connection (search_path, the catalog). Its results never reach the client.
type internalQuery struct {
	results [][][]string // per statement, rows of text values
	rows    [][]string
	err     error
	done    chan struct{}
}

func newInternalQuery() *internalQuery {
	return &internalQuery{done: make(chan struct{})}
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
func (iq *internalQuery) handle(typ wire.ServerType, body []byte) {
	switch typ {
	case wire.ServerDataRow:
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
	case wire.ServerCommandComplete:
		iq.results = append(iq.results, iq.rows)
		iq.rows = nil
	case wire.ServerErrorResponse:
		var er pgproto3.ErrorResponse
		if er.Decode(body) == nil {
			iq.fail(errors.New(er.Code + ": " + er.Message))
		} else {
			iq.fail(errors.New("internal query failed"))
		}
	case wire.ServerReadyForQuery:
		close(iq.done)
	}
}

func (iq *internalQuery) fail(err error) {
	if iq.err == nil {
		iq.err = err
	}
}

// internalName names the statement and portal the proxy's own statements
// run under. A simple Query would make PostgreSQL drop the client's
// unnamed statement and portal; named ones of the proxy's leave them be.
const internalName = "pgcloak.internal"

// internalMessages is an extended-protocol batch running each of sqls in
// turn, then Sync. Closing a statement or portal that does not exist is
// no error, so leftovers of a batch that failed halfway are closed first.
func internalMessages(sqls ...string) []encoder {
	closeBoth := []encoder{
		&pgproto3.Close{ObjectType: byte(wire.TargetPortal), Name: internalName},
		&pgproto3.Close{ObjectType: byte(wire.TargetStatement), Name: internalName},
	}
	msgs := append([]encoder(nil), closeBoth...)
	for _, sql := range sqls {
		msgs = append(msgs,
			&pgproto3.Parse{Name: internalName, Query: sql},
			&pgproto3.Bind{DestinationPortal: internalName, PreparedStatement: internalName},
			&pgproto3.Execute{Portal: internalName},
		)
		msgs = append(msgs, closeBoth...)
	}
	return append(msgs, &pgproto3.Sync{})
}

// runInternal runs sqls as one batch of the proxy's own, while no request
// of the client's is in flight, and waits for its ReadyForQuery. Its
// answer, errors included, never reaches the client nor changes the
// client's session state (see backendMessage).
func (ss *session) runInternal(sqls ...string) (*internalQuery, error) {
	iq := newInternalQuery()
	if err := ss.send(&pending{Kind: pipeline.Internal, Data: iq}, internalMessages(sqls...)...); err != nil {
		return nil, err
	}
	if err := ss.uw.flush(); err != nil {
		return nil, err
	}
	select {
	case <-iq.done:
		return iq, nil
	case <-ss.done:
		return nil, errSessionClosed
	}
}
