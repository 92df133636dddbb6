package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/testenv"
)

// relay forwards TCP connections to PostgreSQL; stopping it is, for the
// proxy behind it, PostgreSQL stopping: connections are refused and open
// ones end.
type relay struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newRelay(t *testing.T, target string) *relay {
	r := &relay{t: t, addr: freeAddr(t), target: target}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *relay) start() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, up)
			r.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (r *relay) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// waitReady polls /readyz until its status is want.
func (p *process) waitReady(want int) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := p.get("/readyz")
		if code == want {
			var rep map[string]any
			if err := json.Unmarshal([]byte(body), &rep); err != nil {
				p.t.Fatalf("/readyz body %q: %v", body, err)
			}
			return rep
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("/readyz stayed %d (%s), want %d", code, body, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestReadyzFollowsTheUpstream(t *testing.T) {
	pg := testenv.Postgres(t)
	up := newRelay(t, pg.Address())
	path := writeConfig(t, up.addr)
	createKeys(t, path)
	p := startProcess(t, path, nil)
	if code, body := p.get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	rep := p.waitReady(200)
	if rep["ready"] != true || rep["upstream"] != "ok" || rep["keystore"] != "ok" || rep["listener"] != "ok" {
		t.Fatalf("/readyz while all is up: %v", rep)
	}
	if code, _ := p.get("/metrics"); code != 200 {
		t.Fatalf("/metrics: %d", code)
	}

	up.stop()
	rep = p.waitReady(503)
	if rep["ready"] != false || !strings.Contains(rep["upstream"].(string), "connection refused") || rep["keystore"] != "ok" {
		t.Fatalf("/readyz with PostgreSQL stopped: %v", rep)
	}
	if code, _ := p.get("/healthz"); code != 200 {
		t.Fatalf("/healthz with PostgreSQL stopped: %d, want 200 (the process is alive)", code)
	}
	if got := p.metric("pgcloak_upstream_connect_errors_total"); got < 1 {
		t.Fatalf("upstream_connect_errors_total = %v after failed connects", got)
	}

	up.start()
	p.waitReady(200)
}

func TestAuditToAClosedStdoutCountsErrorsAndKeepsServing(t *testing.T) {
	pg, path := patientsWithKeys(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := startProcessTo(t, w, path, []string{"PGCLOAK_AUDIT_OUTPUT=stdout"})
	w.Close()
	r.Close() // the reader of the trail went away
	ctx := context.Background()
	conn := p.connect(ctx, "postgres", pg.Database)
	for i := range 3 {
		if _, err := conn.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ($1, $2)", "n", fmt.Sprint("CLOSED-", i)); err != nil {
			t.Fatalf("statement %d with the trail's reader gone: %v", i, err)
		}
	}
	eventually(t, "audit write errors are counted", func() bool { return p.metric("pgcloak_audit_write_errors_total") >= 3 })
	select {
	case <-p.exited:
		t.Fatalf("pgcloak serve exited: %v", p.exitErr)
	default:
	}
}

// TestSIGTERMToTheProcessLetsATransactionCommit sends a real SIGTERM to a
// `pgcloak serve` process (the wiring of newServeCommand): the open
// transaction commits, the session then gets FATAL 57P01, new connections
// are refused, and the process exits 0.
func TestSIGTERMToTheProcessLetsATransactionCommit(t *testing.T) {
	pg, path := patientsWithKeys(t)
	p := startProcess(t, path, nil)
	ctx := context.Background()
	conn := p.connect(ctx, "postgres", pg.Database)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO patients (name, ssn) VALUES ('Term', 'TERM-SSN')"); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGTERM)
	p.waitLog("draining", 1)
	waitRefused(t, p.addr)
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("COMMIT during the drain: %v", err)
	}
	if code := fatalCode(conn.PgConn().ReceiveMessage(ctx)); code != "57P01" {
		t.Fatalf("after the COMMIT: %s, want FATAL 57P01", code)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the process did not exit after the drain")
	}
	if p.exitErr != nil {
		t.Fatalf("exit: %v, want 0", p.exitErr)
	}
	var n int
	if err := pg.Connect(t).QueryRow(ctx, "SELECT count(*) FROM patients WHERE name = 'Term'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("committed rows: %d %v", n, err)
	}
}
