package proxy_test

// Pipeline tests: extended-protocol batches and pipelined queries, errors
// inside them, and the barriers the proxy puts between statements.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestProtoPipelineErrors(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	c := protoConnect(t, h, "doctor")

	// An error in the middle of a pipeline: the rest up to Sync is
	// skipped, the implicit transaction rolls back (including the insert
	// before the error), and the next segment runs.
	c.send(
		&pgproto3.Parse{Name: "ins", Query: "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)"},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("A"), []byte("p-1"), []byte("a")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("B"), []byte("p-2"), []byte("b")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("C"), []byte("p-3"), []byte("c")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT name, diagnosis FROM patients"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "pipeline with error", c.recvReady(), "ParseComplete", "BindComplete", "C:INSERT 0 1", "ParseComplete", "BindComplete", "E:22012", "Z:I")
	wantTokens(t, "next segment", c.recvReady(), "BindComplete", "C:INSERT 0 1", "ParseComplete", "BindComplete", "D:C,c", "C:SELECT 1", "Z:I")

	// A refusal in the middle of a pipeline behaves the same way.
	c.send(
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("D"), []byte("p-4"), []byte("d")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT name FROM patients WHERE diagnosis = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("c")}},
		&pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("E"), []byte("p-5"), []byte("e")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	got := c.recvReady()
	wantTokens(t, "pipeline with refusal", got, "BindComplete", "C:INSERT 0 1", "E:0A000", "Z:I")
	if !strings.Contains(c.lastErr.Message, "public.patients.diagnosis") {
		t.Fatalf("refusal %q", c.lastErr.Message)
	}

	// The server's error reaches the client before the client sends Sync
	// (it flushed), then the rest of the batch arrives: the proxy must
	// keep skipping those messages as the server does, and stay in step.
	c.send(
		&pgproto3.Parse{Name: "bad", Query: "SELECT no_such_column FROM patients"},
		&pgproto3.Flush{},
	)
	wantTokens(t, "parse error before sync", c.recvN(1), "E:42703")
	c.send(
		&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("F"), []byte("p-6"), []byte("f")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Parse{Name: "late", Query: "SELECT ssn FROM patients"},
		&pgproto3.Sync{},
	)
	wantTokens(t, "skipped until sync", c.recvReady(), "Z:I")
	wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
	wantTokens(t, "select in tx", c.query("SELECT ssn FROM patients ORDER BY id"), "Row:ssn/25", "D:p-3", "C:SELECT 1", "Z:T")
	wantTokens(t, "commit", c.query("COMMIT"), "C:COMMIT", "Z:I")
	// The statement parsed while skipping does not exist.
	c.send(&pgproto3.Describe{ObjectType: 'S', Name: "late"}, &pgproto3.Sync{})
	wantTokens(t, "statement parsed while skipping", c.recvReady(), "E:26000", "Z:I")

	var n int
	if err := h.direct().QueryRow(ctx, "SELECT count(*) FROM patients").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d rows, want 1 (%v)", n, err)
	}
}

func TestProtoPipelineLargeAfterError(t *testing.T) {
	// A pipeline larger than the proxy's buffers, failing early: the
	// server's error can come back while the proxy is still forwarding the
	// rest of the batch, which the server then skips.
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	big := strings.Repeat("x", 4000)
	msgs := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: "ins", Query: "INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)"},
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
	}
	for i := 0; i < 300; i++ {
		msgs = append(msgs,
			&pgproto3.Bind{PreparedStatement: "ins", Parameters: [][]byte{[]byte("L"), []byte(fmt.Sprintf("l-%d", i)), []byte(big)}},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{})
	}
	msgs = append(msgs, &pgproto3.Sync{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, m := range msgs {
			c.fe.Send(m)
		}
		c.fe.Flush()
	}()
	wantTokens(t, "large failing pipeline", c.recvReady(), "ParseComplete", "ParseComplete", "BindComplete", "E:22012", "Z:I")
	<-done
	for i := 0; i < 3; i++ {
		wantTokens(t, "begin", c.query("BEGIN"), "C:BEGIN", "Z:T")
		wantTokens(t, "count", c.query("SELECT count(*) FROM patients"), "Row:count/20", "D:0", "C:SELECT 1", "Z:T")
		wantTokens(t, "rollback", c.query("ROLLBACK"), "C:ROLLBACK", "Z:I")
	}
}

func TestProtoPgxBatchAndPipeline(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	conn := h.connect("doctor")

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			conn, err := connectDSN(t, h.dsn("doctor"), func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = mode })
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "DELETE FROM patients"); err != nil {
				t.Fatal(err)
			}
			b := &pgx.Batch{}
			b.Queue("INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4)", "B1", "b-1", "one", time.Date(1991, 2, 3, 0, 0, 0, 0, time.UTC))
			b.Queue("SELECT ssn, diagnosis, dob FROM patients WHERE ssn = $1", "b-1")
			b.Queue("INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3) RETURNING diagnosis", "B2", "b-2", "two")
			b.Queue("SELECT count(*) FROM patients WHERE ssn IN ($1, $2)", "b-1", "b-2")
			b.Queue("UPDATE patients SET diagnosis = $1 WHERE ssn = $2", "one!", "b-1")
			b.Queue("SELECT diagnosis FROM patients WHERE ssn = $1", "b-1")
			br := conn.SendBatch(ctx, b)
			if _, err := br.Exec(); err != nil {
				t.Fatal(err)
			}
			var ssn, diag string
			var dob time.Time
			if err := br.QueryRow().Scan(&ssn, &diag, &dob); err != nil || ssn != "b-1" || diag != "one" || !dob.Equal(time.Date(1991, 2, 3, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("select in batch: %q %q %v %v", ssn, diag, dob, err)
			}
			if err := br.QueryRow().Scan(&diag); err != nil || diag != "two" {
				t.Fatalf("returning in batch: %q %v", diag, err)
			}
			var n int
			if err := br.QueryRow().Scan(&n); err != nil || n != 2 {
				t.Fatalf("count in batch: %d %v", n, err)
			}
			if tag, err := br.Exec(); err != nil || tag.String() != "UPDATE 1" {
				t.Fatalf("update in batch: %v %v", tag, err)
			}
			if err := br.QueryRow().Scan(&diag); err != nil || diag != "one!" {
				t.Fatalf("select after update: %q %v", diag, err)
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}

	// A failing batch: the statements after the error do not run, the
	// whole batch rolls back (one implicit transaction), the conn is fine.
	b := &pgx.Batch{}
	b.Queue("INSERT INTO patients (name, ssn) VALUES ($1, $2)", "F1", "f-1")
	b.Queue("INSERT INTO patients (name, ssn) VALUES ($1, $2)", "F2", "b-1") // duplicate ssn
	b.Queue("INSERT INTO patients (name, ssn) VALUES ($1, $2)", "F3", "f-3")
	err := conn.SendBatch(ctx, b).Close()
	wantCode(t, err, "23505")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM patients WHERE ssn IN ($1, $2)", "f-1", "f-3").Scan(&n); err != nil || n != 0 {
		t.Fatalf("failed batch left %d rows (%v)", n, err)
	}

	// pgconn's pipeline API directly.
	pc := conn.PgConn()
	p := pc.StartPipeline(ctx)
	p.SendPrepare("pp", "SELECT name, diagnosis FROM patients WHERE ssn = $1", nil)
	p.SendQueryPrepared("pp", [][]byte{[]byte("b-2")}, nil, nil)
	p.SendQueryParams("INSERT INTO patients (name, ssn, diagnosis) VALUES ($1, $2, $3)", [][]byte{[]byte("P"), []byte("pp-1"), []byte("piped")}, nil, nil, nil)
	p.SendPipelineSync()
	p.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	p.SendQueryPrepared("pp", [][]byte{[]byte("pp-1")}, nil, nil)
	p.SendPipelineSync()
	p.SendQueryPrepared("pp", [][]byte{[]byte("pp-1")}, nil, nil)
	p.SendPipelineSync()
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	var log []string
	for {
		r, err := p.GetResults()
		if err != nil {
			log = append(log, "err:"+pgCode(err))
			continue
		}
		if r == nil {
			break
		}
		switch r := r.(type) {
		case *pgconn.StatementDescription:
			log = append(log, fmt.Sprintf("described:%v", r.ParamOIDs))
		case *pgconn.ResultReader:
			res := r.Read()
			if res.Err != nil {
				log = append(log, "err:"+pgCode(res.Err))
				continue
			}
			var vals []string
			for _, row := range res.Rows {
				for _, v := range row {
					vals = append(vals, string(v))
				}
			}
			log = append(log, res.CommandTag.String()+"["+strings.Join(vals, ",")+"]")
		case *pgconn.PipelineSync:
			log = append(log, "sync")
			if len(log) > 20 {
				t.Fatalf("runaway pipeline: %q", log)
			}
		}
		if strings.Count(strings.Join(log, " "), "sync") == 3 {
			break
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("pipeline close: %v (log %q)", err, log)
	}
	wantTokens(t, "pgconn pipeline", log,
		"described:[25]", "SELECT 1[B2,two]", "INSERT 0 1[]", "sync",
		"err:22012", "sync",
		"SELECT 1[P,piped]", "sync")
	if pc.TxStatus() != 'I' {
		t.Fatalf("TxStatus %q", pc.TxStatus())
	}
}

func TestProtoDDLInPipelineStaysAtomic(t *testing.T) {
	// DDL in an extended-protocol batch makes the proxy's catalog stale;
	// reloading it with a query of its own in the middle of the batch
	// would commit the batch's implicit transaction early.
	h := newHarness(t, testPolicy, testSchema)
	ctx := ctxT(t)
	h.pg.ExecAdmin(t, "GRANT CREATE ON SCHEMA public TO doctor")
	c := protoConnect(t, h, "doctor")
	c.send(
		&pgproto3.Parse{Query: "CREATE TABLE public.made_in_batch (x int)"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	)
	wantTokens(t, "ddl", c.recvN(3), "ParseComplete", "BindComplete", "C:CREATE TABLE")
	c.send(
		&pgproto3.Parse{Query: "SELECT ssn FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("x")}},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1/(random()*0)::int"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Flush{},
	)
	wantTokens(t, "rest of batch", c.recvN(5), "ParseComplete", "BindComplete", "C:SELECT 0", "ParseComplete", "BindComplete")
	wantTokens(t, "error", c.recvN(1), "E:22012")
	// More extended messages before Sync: skipped by the server; the
	// proxy must not wait for answers to anything it sends meanwhile.
	c.send(
		&pgproto3.Parse{Query: "SELECT ssn FROM patients WHERE ssn = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("y")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	wantTokens(t, "sync", c.recvReady(), "Z:I")
	var exists bool
	if err := h.direct().QueryRow(ctx, "SELECT to_regclass('public.made_in_batch') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("table created in a failed batch exists=%v (%v): the batch was committed early", exists, err)
	}
	wantTokens(t, "after", c.query("SELECT count(*) FROM patients"), "Row:count/20", "D:0", "C:SELECT 1", "Z:I")
}

// 2.3: the backend cleared pending.barrier while the frontend read it (a
// data race the race detector reports).
func TestBarrierHandoffRaceFree(t *testing.T) {
	h := newHarness(t, testPolicy, testSchema)
	c := protoConnect(t, h, "doctor")
	big := "SET search_path = public, other /*" + strings.Repeat("x", 100000) + "*/"
	for range 20 {
		wantTokens(t, "set", c.query(big), "C:SET", "Z:I")
	}
}
