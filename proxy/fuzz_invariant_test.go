package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/proxy"
)

// FuzzInvariantNoPlaintext generates statements from a small grammar around
// the encrypted names of atkPolicy (name and literal spellings, comments,
// dollar quotes, client encodings, standard_conforming_strings, search_path,
// transactions, PREPARE/EXECUTE, DO, COPY, parameters, statements hidden
// behind literals that PostgreSQL may end elsewhere), sends them through the
// proxy on a fresh session as doctor (every write grant) or mallory (none,
// but server-side code allowed: her DO blocks only evaluate markers), and
// then checks, directly in PostgreSQL, that every value of every policy
// column is a pgcloak ciphertext. Run as a plain test it runs the seed
// corpus (make test). Each input costs a PostgreSQL session, some 30 ms, so
// make fuzz runs it with -fuzzminimizetime 10x: minimising each new
// interesting input for the default 60 s would take most of the run.
func FuzzInvariantNoPlaintext(f *testing.F) {
	for _, s := range fzSeeds() {
		f.Add(s)
	}
	// The harness must not log to f while the fuzz target runs.
	h := newHarness(f, atkPolicy, atkSchema, func(c *proxy.Config) {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	})
	db := h.direct()
	base := fzBaseRows(f, h, db)
	baseline := fuzzActiveSessions(f)

	f.Fuzz(func(t *testing.T, data []byte) {
		g := fzGenerate(data)
		answers, runErr := fzRun(t, h, g)
		if runErr == nil {
			// The session is gone, and with it any transaction it
			// left open.
			fuzzAwaitSessions(t, baseline)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		bad, err := fzPlaintextValues(ctx, db)
		// Restore the tables before failing: the fuzzer runs more inputs
		// (minimising) in this process.
		if rerr := base.restore(ctx, db); rerr != nil {
			t.Fatalf("restore the policy tables: %v", rerr)
		}
		if err != nil {
			t.Fatalf("read the policy tables: %v", err)
		}
		if len(bad) > 0 {
			t.Fatalf("PostgreSQL holds values of policy columns that are not ciphertexts:\n  %s\n%s",
				strings.Join(bad, "\n  "), g.describe(answers))
		}
		if runErr != nil {
			t.Fatalf("%v\n%s", runErr, g.describe(answers))
		}
	})
}

// ---------------------------------------------------------------------------
// The policy tables: one row each, written through the proxy, restored after
// every input.

const (
	fzBaseSSN  = "FZ-BASE-SSN"
	fzBaseName = "fz-base"
)

type fzBase struct {
	patients [][]any // id, name, ssn, diagnosis, dob
	visits   [][]any // id, patient_ssn, note, visited_on
}

func fzBaseRows(f *testing.F, h *harness, db *pgx.Conn) *fzBase {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doc, err := pgx.Connect(ctx, h.dsn("doctor"))
	if err != nil {
		f.Fatal(err)
	}
	defer doc.Close(ctx)
	for _, q := range []string{
		"INSERT INTO patients (name, ssn, diagnosis, dob) VALUES ('" + fzBaseName + "', '" + fzBaseSSN + "', 'FZ-BASE-DIAG', '2000-01-01')",
		"INSERT INTO visits (patient_ssn, note, visited_on) VALUES ('" + fzBaseSSN + "', 'FZ-BASE-NOTE', '2020-02-02')",
	} {
		if _, err := doc.Exec(ctx, q); err != nil {
			f.Fatalf("%s: %v", q, err)
		}
	}
	b := &fzBase{}
	read := func(q string) [][]any {
		rows, err := db.Query(ctx, q)
		if err != nil {
			f.Fatal(err)
		}
		defer rows.Close()
		var out [][]any
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, v)
		}
		if err := rows.Err(); err != nil {
			f.Fatal(err)
		}
		return out
	}
	b.patients = read("SELECT id, name, ssn, diagnosis, dob FROM public.patients")
	b.visits = read("SELECT id, patient_ssn, note, visited_on FROM public.visits")
	if len(b.patients) != 1 || len(b.visits) != 1 {
		f.Fatalf("base rows: %d patients, %d visits", len(b.patients), len(b.visits))
	}
	if bad, err := fzPlaintextValues(ctx, db); err != nil || len(bad) > 0 {
		f.Fatalf("base rows hold plaintext: %v %v", bad, err)
	}
	return b
}

// restore puts the policy tables back to their base rows.
func (b *fzBase) restore(ctx context.Context, db *pgx.Conn) error {
	batch := &pgx.Batch{}
	batch.Queue("DELETE FROM public.visits")
	batch.Queue("DELETE FROM public.patients")
	for _, r := range b.patients {
		batch.Queue("INSERT INTO public.patients (id, name, ssn, diagnosis, dob) VALUES ($1, $2, $3, $4, $5)", r...)
	}
	for _, r := range b.visits {
		batch.Queue("INSERT INTO public.visits (id, patient_ssn, note, visited_on) VALUES ($1, $2, $3, $4)", r...)
	}
	return db.SendBatch(ctx, batch).Close()
}

// fzPlaintextValues reads every policy column directly and returns the
// non-NULL values that are not pgcloak ciphertexts.
func fzPlaintextValues(ctx context.Context, db *pgx.Conn) ([]string, error) {
	rows, err := db.Query(ctx, `
SELECT 'patients.ssn', id, ssn FROM public.patients WHERE ssn IS NOT NULL
UNION ALL SELECT 'patients.diagnosis', id, diagnosis FROM public.patients WHERE diagnosis IS NOT NULL
UNION ALL SELECT 'patients.dob', id, dob FROM public.patients WHERE dob IS NOT NULL
UNION ALL SELECT 'visits.patient_ssn', id, patient_ssn FROM public.visits WHERE patient_ssn IS NOT NULL
UNION ALL SELECT 'visits.note', id, note FROM public.visits WHERE note IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var bad []string
	for rows.Next() {
		var col string
		var id int
		var v []byte
		if err := rows.Scan(&col, &id, &v); err != nil {
			return nil, err
		}
		if !keymap.IsCiphertext(v) {
			bad = append(bad, fmt.Sprintf("%s (id %d) = %q", col, id, v))
		}
	}
	return bad, rows.Err()
}

// ---------------------------------------------------------------------------
// Running one generated session through the proxy.

// fzRun opens a fresh raw session as g.role with g.startup's parameters,
// sends g's statements in g.mode and reads every answer, tolerating errors
// and a session the proxy ends. It returns the answers' tokens, one list
// per ReadyForQuery, and an error only if the proxy stops answering.
func fzRun(t *testing.T, h *harness, g *fzGen) ([][]string, error) {
	conn := protoDial(t, h)
	defer conn.Close()
	fe := pgproto3.NewFrontend(conn, conn)
	c := &protoClient{t: t, conn: conn, fe: fe}
	params := map[string]string{
		"user": g.role, "database": h.pg.Database, "application_name": "pgcloak-fuzz-invariant",
		"statement_timeout": "2000", "lock_timeout": "1000", "idle_in_transaction_session_timeout": "5000",
	}
	for k, v := range fzStartups[g.startup].params {
		params[k] = v
	}
	var answers [][]string
	// send writes msgs; false when the proxy already hung up.
	send := func(msgs ...pgproto3.FrontendMessage) bool {
		for _, m := range msgs {
			fe.Send(m)
		}
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return fe.Flush() == nil
	}
	// readReady reads up to a ReadyForQuery; false when the session ended.
	readReady := func() (bool, error) {
		var toks []string
		defer func() { answers = append(answers, toks) }()
		for {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			msg, err := fe.Receive()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return false, fmt.Errorf("no ReadyForQuery from the proxy within 10s (got %q)", toks)
				}
				toks = append(toks, "EOF")
				return false, nil
			}
			tok := c.token(msg)
			if tok == "" {
				continue
			}
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				tok += " " + e.Message
			}
			toks = append(toks, tok)
			if strings.HasPrefix(tok, "Z:") {
				return true, nil
			}
		}
	}
	send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params})
	if ok, err := readReady(); !ok || err != nil {
		return answers, err
	}
	if last := answers[0]; last[len(last)-1] != "Z:I" {
		return answers, nil // startup refused
	}
	answers = answers[:0]

	simple := func(s fzStmt) []pgproto3.FrontendMessage {
		msgs := []pgproto3.FrontendMessage{&pgproto3.Query{String: s.sql}}
		return append(msgs, s.copyMsgs()...)
	}
	extended := func(s fzStmt, sync bool) []pgproto3.FrontendMessage {
		msgs := []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: s.sql, ParameterOIDs: s.paramOIDs},
			&pgproto3.Bind{Parameters: s.params},
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Execute{},
		}
		msgs = append(msgs, s.copyMsgs()...)
		if sync {
			msgs = append(msgs, &pgproto3.Sync{})
		}
		return msgs
	}
	var msgs []pgproto3.FrontendMessage
	readys := 0
	switch g.mode {
	case fzModeSequential:
		for _, s := range g.stmts {
			if !send(simple(s)...) {
				return answers, nil
			}
			if ok, err := readReady(); !ok || err != nil {
				return answers, err
			}
		}
		return answers, nil
	case fzModePipelined:
		for _, s := range g.stmts {
			msgs = append(msgs, simple(s)...)
		}
		readys = len(g.stmts)
	case fzModeJoined:
		var parts []string
		var copies []pgproto3.FrontendMessage
		for _, s := range g.stmts {
			parts = append(parts, s.sql)
			copies = append(copies, s.copyMsgs()...)
		}
		msgs = append([]pgproto3.FrontendMessage{&pgproto3.Query{String: strings.Join(parts, g.joiner)}}, copies...)
		readys = 1
	case fzModeExtended:
		for _, s := range g.stmts {
			msgs = append(msgs, extended(s, true)...)
		}
		readys = len(g.stmts)
	case fzModeExtendedOneSync:
		for _, s := range g.stmts {
			msgs = append(msgs, extended(s, false)...)
		}
		msgs = append(msgs, &pgproto3.Sync{})
		readys = 1
	case fzModeMixed:
		for i, s := range g.stmts {
			if i%2 == 0 {
				msgs = append(msgs, simple(s)...)
			} else {
				msgs = append(msgs, extended(s, true)...)
			}
		}
		readys = len(g.stmts)
	}
	if len(g.stmts) == 0 {
		return answers, nil
	}
	if !send(msgs...) {
		return answers, nil
	}
	for range readys {
		if ok, err := readReady(); !ok || err != nil {
			return answers, err
		}
	}
	return answers, nil
}

// ---------------------------------------------------------------------------
// The generator. Each choice takes one byte of the input (its value modulo
// the number of options; 0 once the input is used up), so option 0 is the
// plainest spelling everywhere.

const (
	fzModeSequential      = iota // one Query at a time
	fzModePipelined              // every Query sent before any answer is read
	fzModeJoined                 // one Query holding every statement
	fzModeExtended               // Parse/Bind/Describe/Execute/Sync each, pipelined
	fzModeExtendedOneSync        // the same with one Sync at the end
	fzModeMixed                  // simple and extended alternating, pipelined
	fzModes
)

// Statement kinds.
const (
	fzOpSCS = iota
	fzOpEncoding
	fzOpTx
	fzOpSearchPath
	fzOpInsert
	fzOpUpdate
	fzOpSelect
	fzOpPrepare
	fzOpExecute
	fzOpDo
	fzOpHidden
	fzOpCopy
	fzOpParam
	fzOps
)

const fzMaxStmts = 8

var fzRoles = []string{"doctor", attacker}

var fzStartups = []struct {
	name   string
	params map[string]string
}{
	{"default", nil},
	{"client_encoding SJIS", map[string]string{"client_encoding": "SJIS"}},
	{"client_encoding BIG5", map[string]string{"client_encoding": "BIG5"}},
	{"options scs off", map[string]string{"options": "-c standard_conforming_strings=off"}},
	{"scs off", map[string]string{"standard_conforming_strings": "off"}},
	{"SHIFT_JIS_2004 and scs off", map[string]string{"client_encoding": "SHIFT_JIS_2004", "options": "-c standard_conforming_strings=off"}},
	{"options client_encoding GBK", map[string]string{"options": "-c client_encoding=GBK"}},
}

var fzJoiners = []string{"; ", ";\n", "; /* ; */ ", ";--'\n", ";;"}

type fzStmt struct {
	sql       string
	params    [][]byte // extended protocol only
	paramOIDs []uint32
	copyData  []byte // sent right after the statement: it may be a COPY FROM STDIN
}

func (s fzStmt) copyMsgs() []pgproto3.FrontendMessage {
	if s.copyData == nil {
		return nil
	}
	return []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: s.copyData}, &pgproto3.CopyDone{}}
}

type fzGen struct {
	data    []byte
	pos     int
	tag     string // unique to the input: every marker holds it
	markers int
	depth   int

	role    string
	startup int
	mode    int
	joiner  string
	stmts   []fzStmt
}

func (g *fzGen) pick(n int) int {
	if g.pos >= len(g.data) {
		return 0
	}
	b := g.data[g.pos]
	g.pos++
	return int(b) % n
}

func fzPick[T any](g *fzGen, options []T) T { return options[g.pick(len(options))] }

// marker is a plaintext unique to the input and to its place in it.
func (g *fzGen) marker() string {
	g.markers++
	return fmt.Sprintf("FZ%s-%d", g.tag, g.markers)
}

// dateMarker is a date for dob, different for every marker of an input.
func (g *fzGen) dateMarker() string {
	g.markers++
	h := fnv.New32a()
	fmt.Fprintf(h, "%s-%d", g.tag, g.markers)
	v := h.Sum32()
	return fmt.Sprintf("%04d-%02d-%02d", 1900+v%120, 1+(v>>8)%12, 1+(v>>16)%28)
}

func fzGenerate(data []byte) *fzGen {
	h := fnv.New32a()
	h.Write(data)
	g := &fzGen{data: data, tag: fmt.Sprintf("%08X", h.Sum32())}
	g.role = fzPick(g, fzRoles)
	g.startup = g.pick(len(fzStartups))
	g.mode = g.pick(fzModes)
	g.joiner = fzPick(g, fzJoiners)
	for len(g.stmts) < fzMaxStmts && g.pos < len(g.data) {
		g.stmts = append(g.stmts, g.stmt(g.pick(fzOps)))
	}
	return g
}

func (g *fzGen) describe(answers [][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "role %s, startup %s, mode %d, joiner %q, %d statements:\n", g.role, fzStartups[g.startup].name, g.mode, g.joiner, len(g.stmts))
	for i, s := range g.stmts {
		fmt.Fprintf(&b, "  %d: %q", i, s.sql)
		if s.params != nil {
			fmt.Fprintf(&b, " params %q oids %v", s.params, s.paramOIDs)
		}
		if s.copyData != nil {
			fmt.Fprintf(&b, " copy data %q", s.copyData)
		}
		b.WriteByte('\n')
	}
	for i, a := range answers {
		fmt.Fprintf(&b, "  answer %d: %q\n", i, a)
	}
	fmt.Fprintf(&b, "input: %q", g.data)
	return b.String()
}

func (g *fzGen) stmt(op int) fzStmt {
	switch op {
	case fzOpSCS:
		return fzStmt{sql: g.scs()}
	case fzOpEncoding:
		return fzStmt{sql: g.encoding()}
	case fzOpTx:
		return fzStmt{sql: fzPick(g, []string{
			"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT fz", "ROLLBACK TO SAVEPOINT fz", "RELEASE SAVEPOINT fz",
			"START TRANSACTION", "END", "ABORT", "BEGIN ISOLATION LEVEL SERIALIZABLE",
		})}
	case fzOpSearchPath:
		return fzStmt{sql: fzPick(g, []string{
			"SET search_path = public", "SET search_path = other, public", "SET search_path = mallory, public",
			"SET search_path TO pg_catalog, public", `SET search_path = "$user", public`, "RESET search_path",
			"SELECT set_config('search_path', 'other, public', false)", "SET LOCAL search_path = other",
			`SET search_path = "PUBLIC", public`, "SET search_path = ''",
		})}
	case fzOpInsert:
		return fzStmt{sql: g.insert()}
	case fzOpUpdate:
		return fzStmt{sql: g.update()}
	case fzOpSelect:
		return fzStmt{sql: g.sel()}
	case fzOpPrepare:
		return fzStmt{sql: g.prepare()}
	case fzOpExecute:
		return fzStmt{sql: "EXECUTE" + g.sp() + "fzp" + g.sp() + "(" + g.value("ssn") + ")"}
	case fzOpDo:
		return fzStmt{sql: g.do()}
	case fzOpHidden:
		return fzStmt{sql: g.hidden()}
	case fzOpCopy:
		return g.copy()
	case fzOpParam:
		return g.param()
	}
	panic(op)
}

// sp is the space between two tokens: comments holding quotes,
// backslashes and non-ASCII text included.
func (g *fzGen) sp() string {
	return fzPick(g, []string{
		" ", "\n", "\t", " /* ' */ ", " --'\n", " /* \\ */ ", " /* /* */ */ ", " /*ゃ\\*/ ", "\r\n", " -- $$\n", " /* $x$ */ ",
	})
}

func (g *fzGen) scs() string {
	v := fzPick(g, []string{"off", "on", "false", "0", "true", "'off'", "OFF", "no"})
	bare := strings.Trim(v, "'")
	return fzPick(g, []string{
		"SET standard_conforming_strings = " + v,
		"SET standard_conforming_strings TO " + v,
		"SET SESSION standard_conforming_strings = " + v,
		"SET LOCAL standard_conforming_strings = " + v,
		`SET "standard_conforming_strings" = ` + v,
		"SET Standard_Conforming_Strings = " + v,
		"SELECT set_config('standard_conforming_strings', '" + bare + "', false)",
		"SELECT pg_catalog.set_config('standard_conforming_strings', '" + bare + "', false) FROM (SELECT 1) s",
		"SELECT set_config('standard_conforming_strings', '" + bare + "', true)",
		"RESET standard_conforming_strings",
		"SET standard_conforming_strings TO DEFAULT",
		"SET backslash_quote = " + v,
		"SET escape_string_warning = " + v,
	})
}

func (g *fzGen) encoding() string {
	e := fzPick(g, []string{
		"UTF8", "SJIS", "BIG5", "GBK", "SHIFT_JIS_2004", "LATIN1", "GB18030", "UHC", "JOHAB", "EUC_JP",
		"sjis", "Shift_JIS", "WIN932", "mskanji", "cp936", "SQL_ASCII", "WIN1252", "EUC_KR",
	})
	return fzPick(g, []string{
		"SET client_encoding = '" + e + "'",
		"SET client_encoding TO " + e,
		"SET NAMES '" + e + "'",
		"SET SESSION client_encoding = '" + e + "'",
		"SET LOCAL client_encoding = '" + e + "'",
		"SELECT set_config('client_encoding', '" + e + "', false)",
		"SELECT pg_catalog.set_config('client_encoding', '" + e + "', false) FROM (SELECT 1) s",
		"RESET client_encoding",
		"SET client_encoding TO DEFAULT",
		`SET "client_encoding" = '` + e + "'",
		"SET client_encoding = '" + e + "'; SELECT 1",
	})
}

// fzTables are the policy tables and their encrypted columns.
var fzTables = []struct {
	name string
	cols []string
}{
	{"patients", []string{"ssn", "diagnosis", "dob"}},
	{"visits", []string{"patient_ssn", "note"}},
}

// table spells public.<name>.
func (g *fzGen) table(name string) string {
	esc := fzUnicodeIdent(name, 1, '\\')
	return fzPick(g, []string{
		name,
		`"` + name + `"`,
		"public." + name,
		"PUBLIC." + strings.ToUpper(name),
		`"public"."` + name + `"`,
		esc,
		fzUnicodeIdent(name, 0, '!') + " UESCAPE '!'",
		"public/**/./**/" + name,
		"public --c\n." + name,
		strings.ToUpper(name[:1]) + name[1:],
		`public . "` + name + `"`,
		"ONLY " + name,
		"public\n.\t" + name,
		`"PUBLIC".` + name,
		"pg_temp." + name,
		"other." + name,
		"public." + esc,
	})
}

// fzUnicodeIdent is U&"…" with the character at i escaped by esc.
func fzUnicodeIdent(name string, i int, esc byte) string {
	return fmt.Sprintf(`U&"%s%c%04x%s"`, name[:i], esc, name[i], name[i+1:])
}

func (g *fzGen) column(name string) string {
	return fzPick(g, []string{
		name, `"` + name + `"`, strings.ToUpper(name), fzUnicodeIdent(name, 1, '\\'), "/* ' */" + name,
	})
}

// literal spells a string constant whose value is (or holds) v, v being
// made of letters, digits and '-'.
func (g *fzGen) literal(v string) string {
	esc := fmt.Sprintf("\\%04X", v[0]) + v[1:]
	return fzPick(g, []string{
		"'" + v + "'",
		"E'" + v + "'",
		"$$" + v + "$$",
		"$t$" + v + "$t$",
		"$ゃ$" + v + "$ゃ$",
		"U&'" + esc + "'",
		"U&'" + strings.Replace(esc, "\\", "!", 1) + "' UESCAPE '!'",
		fmt.Sprintf("E'\\x%02x", v[0]) + v[1:] + "'",
		fmt.Sprintf("E'\\%03o", v[0]) + v[1:] + "'",
		"'" + v[:2] + "'\n'" + v[2:] + "'",
		"N'" + v + "'",
		"'" + v + "\\'",
		"E'" + v + "\\\\'",
		"'ゃ\\" + v + "'",
		"'奥\\" + v + "'",
		"'め_\\" + v + "'",
		"E'ゃ\\\\" + v + "'",
		"'" + v + "''q'",
		"E'" + v + "\\'q'",
		"E'ゃ\\'" + v + "'",
		"$a$" + v + "$b$a$",
		"'\\x" + fmt.Sprintf("%x", v) + "'",
		"'" + v + "ゃ'",
		"E'" + v + "め_'",
	})
}

// value is what a statement writes into (or compares with) column col: a
// marker, spelled as a literal, maybe inside an expression.
func (g *fzGen) value(col string) string {
	v := g.marker()
	if col == "dob" {
		v = g.dateMarker()
	}
	l := g.literal(v)
	return fzPick(g, []string{
		l, l + "::text", "CAST(" + l + " AS text)", "(" + l + ")", l + "::bytea", "convert_to(" + l + ", 'UTF8')",
		l + " || ''", "(SELECT " + l + ")", "COALESCE(" + l + ", NULL)", "decode(" + l + ", 'escape')", l + "::date",
		"convert_to(name, 'UTF8')", "NULL", "DEFAULT",
	})
}

func (g *fzGen) insert() string {
	t := fzPick(g, fzTables)
	c := fzPick(g, t.cols)
	cols := []string{g.column(c)}
	vals := []string{g.value(c)}
	if g.pick(2) == 1 {
		c2 := fzPick(g, t.cols)
		cols = append(cols, g.column(c2))
		vals = append(vals, g.value(c2))
	}
	if t.name == "patients" {
		cols = append([]string{"name"}, cols...)
		vals = append([]string{g.literal("fzname")}, vals...)
	}
	into := "INSERT" + g.sp() + "INTO" + g.sp() + g.table(t.name) + g.sp() + "(" + strings.Join(cols, ", ") + ")"
	row := "(" + strings.Join(vals, ", ") + ")"
	switch g.pick(7) {
	case 1:
		return into + " SELECT " + strings.Join(vals, ", ")
	case 2:
		return into + " VALUES " + row + ", " + row
	case 3:
		return into + " VALUES " + row + " ON CONFLICT DO NOTHING"
	case 4:
		return "WITH x AS (SELECT 1) " + into + " VALUES " + row
	case 5:
		return into + " VALUES " + row + " RETURNING " + c
	case 6:
		return "WITH w AS (" + into + " VALUES " + row + " RETURNING 1) SELECT count(*) FROM w"
	}
	return into + g.sp() + "VALUES" + g.sp() + row
}

func (g *fzGen) update() string {
	t := fzPick(g, fzTables)
	c := fzPick(g, t.cols)
	s := "UPDATE" + g.sp() + g.table(t.name) + g.sp() + "SET" + g.sp() + g.column(c) + " = " + g.value(c)
	key := t.cols[0]
	switch g.pick(5) {
	case 1:
		return s + " WHERE " + key + " = " + g.literal(fzBaseSSN)
	case 2:
		return s + " WHERE true"
	case 3:
		return s + " WHERE " + key + " IN (" + g.literal(fzBaseSSN) + ", " + g.value(key) + ")"
	case 4:
		return s + " WHERE id = 1 RETURNING " + c
	}
	return s
}

func (g *fzGen) sel() string {
	t := fzPick(g, fzTables)
	c := fzPick(g, t.cols)
	tbl := g.table(t.name)
	switch g.pick(6) {
	case 1:
		return "SELECT count(*) FROM " + tbl + " WHERE " + g.column(c) + " IN (" + g.value(c) + ", " + g.value(c) + ")"
	case 2:
		return "SELECT " + g.literal(g.marker())
	case 3:
		return "DELETE FROM " + tbl + " WHERE " + g.column(c) + " = " + g.value(c)
	case 4:
		return "SELECT " + c + " FROM " + tbl + " WHERE " + t.cols[0] + " = " + g.literal(fzBaseSSN)
	case 5:
		return "SELECT " + g.literal(g.marker()) + " AS " + c + " FROM " + tbl
	}
	return "SELECT" + g.sp() + "id" + g.sp() + "FROM" + g.sp() + tbl + g.sp() + "WHERE" + g.sp() + g.column(c) + " = " + g.value(c)
}

func (g *fzGen) prepare() string {
	t := fzPick(g, fzTables)
	c := fzPick(g, t.cols)
	typ := fzPick(g, []string{"(text)", "(bytea)", "", "(date)", "(varchar)", "(unknown)"})
	tbl, col := g.table(t.name), g.column(c)
	var body string
	switch {
	case g.pick(3) == 1:
		body = "UPDATE " + tbl + " SET " + col + " = $1"
	case t.name == "patients":
		body = "INSERT INTO " + tbl + " (name, " + col + ") VALUES ('fz', $1)"
	default:
		body = "INSERT INTO " + tbl + " (" + col + ") VALUES ($1)"
	}
	return "PREPARE" + g.sp() + "fzp" + typ + " AS" + g.sp() + body
}

// do is a DO block: for doctor (not allowed server-side code) one that
// writes a marker, for mallory (allowed, and by design unchecked) one that
// only evaluates it.
func (g *fzGen) do() string {
	var body string
	if g.role == "doctor" {
		tbl := g.table("patients")
		body = "INSERT INTO " + tbl + " (name, ssn) VALUES ('fz', " + g.literal(g.marker()) + ")"
	} else {
		body = "PERFORM " + g.literal(g.marker())
	}
	body = "BEGIN " + body + "; END"
	return fzPick(g, []string{
		"DO $$ " + body + " $$",
		"DO LANGUAGE plpgsql $x$ " + body + " $x$",
		"DO $q$ " + body + " $q$ LANGUAGE plpgsql",
		"DO '" + strings.ReplaceAll(body, "'", "''") + "'",
		"DO E'" + strings.ReplaceAll(body, "'", "\\'") + "'",
	})
}

// hidden puts a statement behind a literal whose end PostgreSQL may see
// elsewhere than a UTF-8 lexer with standard_conforming_strings on:
// SELECT 'x\”; INSERT … --' and SELECT E'ゃ\'; INSERT … --'.
func (g *fzGen) hidden() string {
	lead := fzPick(g, []string{"x", "ゃ", "奥", "め_", "", "\x81", "\x95", "\xa5", "ゃゃ"})
	trick := fzPick(g, []string{
		"'" + lead + "\\''",
		"E'" + lead + "\\'",
		"'" + lead + "\\'",
		"E'" + lead + "\\\\'",
		"U&'" + lead + "\\'",
		"N'" + lead + "\\''",
		"E'" + lead + "\\''",
	})
	prefix := fzPick(g, []string{"SELECT ", "SELECT 1 WHERE '' <> ", "SELECT id FROM patients WHERE name = ", "PREPARE q AS SELECT "})
	sep := g.sp()
	g.depth++
	defer func() { g.depth-- }()
	var inner string
	if g.depth > 2 {
		inner = "SELECT 1"
	} else {
		inner = g.stmt(fzPick(g, []int{fzOpInsert, fzOpExecute, fzOpUpdate, fzOpSelect, fzOpDo, fzOpPrepare, fzOpHidden, fzOpSCS})).sql
	}
	closer := fzPick(g, []string{" --'", "\n--'", "; --'", " /*'*/", "; SELECT '", " --'\n"})
	return prefix + trick + ";" + sep + inner + closer
}

// copy is a COPY FROM STDIN with one row, whose first field may end in a
// backslash after a non-ASCII character.
func (g *fzGen) copy() fzStmt {
	t := fzPick(g, fzTables)
	c := fzPick(g, t.cols)
	v := g.marker()
	if c == "dob" {
		v = g.dateMarker()
	}
	other := "visited_on"
	otherVal := "2020-01-01"
	if t.name == "patients" {
		other, otherVal = "name", "fz"
	}
	lead := fzPick(g, []string{"", "ゃ\\", "奥\\", "め_\\", "x\\", "\\", "ゃ"})
	col := g.column(c)
	cols := other + ", " + col
	row := otherVal + lead + "\t" + v
	if g.pick(2) == 1 {
		cols = col + ", " + other
		row = lead + v + "\t" + otherVal
	}
	format := g.pick(4)
	opts := fzPick(g, []string{"", " (FORMAT text)", " WITH (FORMAT text)"})
	switch format {
	case 1, 2:
		row = strings.ReplaceAll(row, "\t", ",")
		opts = " (FORMAT csv)"
		if format == 2 {
			row = `"` + strings.ReplaceAll(row, ",", `","`) + `"`
			opts = ` (FORMAT csv, ESCAPE '\')`
		}
	case 3:
		row = v + "\t" + otherVal
		cols = col + ", " + other
		opts = " (FORMAT text, DELIMITER '\\')"
		row = strings.ReplaceAll(row, "\t", "\\")
	}
	sql := "COPY" + g.sp()
	sql += g.table(t.name) + " (" + cols + ") FROM STDIN" + opts
	return fzStmt{
		sql:      sql,
		copyData: []byte(row + "\n"),
	}
}

// param is a statement with $1 bound to a marker (extended protocol; in a
// simple Query PostgreSQL refuses it).
func (g *fzGen) param() fzStmt {
	t := fzPick(g, fzTables)
	c := fzPick(g, t.cols)
	p := fzPick(g, []string{"$1", "$1::text", "$1::bytea", "CAST($1 AS bytea)", "convert_to($1, 'UTF8')", "($1)"})
	tbl := g.table(t.name)
	var sql string
	switch g.pick(3) {
	case 1:
		sql = "UPDATE " + tbl + " SET " + g.column(c) + " = " + p
	case 2:
		sql = "INSERT INTO " + tbl + " (" + g.column(c) + ") SELECT " + p
	default:
		sql = "INSERT INTO " + tbl + " (" + g.column(c) + ") VALUES (" + p + ")"
	}
	if t.name == "patients" && !strings.HasPrefix(sql, "UPDATE") {
		sql = strings.Replace(sql, "(", "(name, ", 1)
		sql = strings.Replace(sql, "VALUES (", "VALUES ('fz', ", 1)
		sql = strings.Replace(sql, "SELECT ", "SELECT 'fz', ", 1)
	}
	v := g.marker()
	if c == "dob" {
		v = g.dateMarker()
	}
	oids := fzPick(g, [][]uint32{nil, {25}, {17}, {0}, {1082}})
	return fzStmt{sql: sql, params: [][]byte{[]byte(v)}, paramOIDs: oids}
}

// ---------------------------------------------------------------------------
// Seeds. Each is the choices of fzGenerate, in order: role, startup, mode,
// joiner, then per statement its kind and that kind's choices.

// fzSeeds covers every statement kind and spelling, and the known attacks.
func fzSeeds() [][]byte {
	const doctor, mallory = 0, 1
	seed := func(role, startup, mode int, stmts ...[]byte) []byte {
		out := []byte{byte(role), byte(startup), byte(mode), 0}
		for _, s := range stmts {
			out = append(out, s...)
		}
		return out
	}
	op := func(kind int, choices ...int) []byte {
		out := []byte{byte(kind)}
		for _, c := range choices {
			out = append(out, byte(c))
		}
		return out
	}
	// Choices of the statement kinds, in the order the generator makes
	// them (sp is a space choice, 0 for " ").
	//
	// insert: table, column, its spelling, literal, expression, second
	// column (0: none), [name literal (patients)], sp, sp, table
	// spelling, sp, form, [sp, sp (form 0)].
	insert := func(table, col, name, lit, expr, form, nameLit int) []byte {
		c := []int{table, col, 0, lit, expr, 0}
		if table == 0 {
			c = append(c, nameLit)
		}
		c = append(c, 0, 0, name, 0, form)
		if form == 0 {
			c = append(c, 0, 0)
		}
		return op(fzOpInsert, c...)
	}
	// hidden: lead, trick, prefix, sp, inner kind, inner choices, closer.
	const innerInsert, innerExecute = 0, 1
	hidden := func(lead, trick int, inner []byte, closer int) []byte {
		return append(append(op(fzOpHidden, lead, trick, 0, 0), inner...), byte(closer))
	}
	// SELECT <trick>; INSERT INTO patients (name, ssn) VALUES ($$fzname$$, $$M$$) --'
	hiddenInsert := func(lead, trick, closer int) []byte {
		ins := insert(0, 0, 0, 2, 0, 0, 2)
		ins[0] = innerInsert
		return hidden(lead, trick, ins, closer)
	}
	// SELECT <trick>; EXECUTE fzp ($$M$$) --'
	hiddenExecute := func(lead, trick int) []byte {
		return hidden(lead, trick, []byte{innerExecute, 0, 0, 2, 0}, 0)
	}
	const (
		leadX, leadYa, leadOku, leadMe = 0, 1, 2, 3
		trickSCS, trickEnc             = 0, 1 // 'lead\'' and E'lead\'
	)
	scsOff := op(fzOpSCS, 0, 0)        // SET standard_conforming_strings = off
	sjis := op(fzOpEncoding, 1, 0)     // SET client_encoding = 'SJIS'
	big5 := op(fzOpEncoding, 2, 0)     // SET client_encoding = 'BIG5'
	sjis2004 := op(fzOpEncoding, 4, 0) // SET client_encoding = 'SHIFT_JIS_2004'
	// prepare: table, column, type, table spelling, column spelling,
	// form, sp, sp. PREPARE fzp(text) AS INSERT INTO patients (name, ssn) VALUES ('fz', $1)
	prep := op(fzOpPrepare, 0, 0, 0, 0, 0, 0, 0, 0)
	var seeds [][]byte
	add := func(s ...[]byte) { seeds = append(seeds, s...) }

	// The known attacks: standard_conforming_strings off, then
	// SELECT 'x\''; INSERT … --', on its own, pipelined and mixed, as
	// doctor and as mallory; the same behind client encodings with
	// E'ゃ\', E'奥\', E'め_\'.
	for _, role := range []int{doctor, mallory} {
		for _, mode := range []int{fzModeSequential, fzModePipelined, fzModeMixed} {
			add(seed(role, 0, mode, scsOff, hiddenInsert(leadX, trickSCS, 0)))
			add(seed(role, 0, mode, sjis, hiddenInsert(leadYa, trickEnc, 0)))
		}
	}
	add(
		seed(doctor, 0, fzModeJoined, scsOff, hiddenInsert(leadX, trickSCS, 0)),
		seed(doctor, 0, fzModeSequential, big5, hiddenInsert(leadOku, trickEnc, 0)),
		seed(doctor, 0, fzModePipelined, op(fzOpEncoding, 3, 5), hiddenInsert(leadYa, trickEnc, 1)), // GBK by set_config
		seed(doctor, 0, fzModeSequential, sjis2004, hiddenInsert(leadMe, trickEnc, 0)),
		seed(doctor, 0, fzModePipelined, op(fzOpEncoding, 6, 6), hiddenInsert(leadYa, trickEnc, 0)), // GB18030, set_config in FROM
		seed(doctor, 1, fzModeSequential, hiddenInsert(leadYa, trickEnc, 0)),                        // SJIS at startup
		seed(doctor, 3, fzModeSequential, hiddenInsert(leadX, trickSCS, 0)),                         // scs off at startup
		seed(mallory, 4, fzModePipelined, hiddenInsert(leadX, trickSCS, 0)),
		seed(doctor, 5, fzModeSequential, hiddenInsert(leadMe, trickEnc, 0)),
		seed(doctor, 6, fzModeSequential, hiddenInsert(leadYa, trickEnc, 0)),
		seed(doctor, 0, fzModeSequential, op(fzOpSCS, 0, 7), hiddenInsert(leadX, trickSCS, 0)), // set_config in FROM
		seed(doctor, 0, fzModeSequential, op(fzOpTx, 0), op(fzOpSCS, 0, 3), hiddenInsert(leadX, trickSCS, 0), op(fzOpTx, 2)),
		seed(doctor, 0, fzModeExtended, scsOff, hiddenInsert(leadX, trickSCS, 0)),
		seed(doctor, 0, fzModeExtendedOneSync, sjis, hiddenInsert(leadYa, trickEnc, 0)),
		// A hidden EXECUTE of a statement prepared earlier.
		seed(doctor, 0, fzModeSequential, prep, scsOff, hiddenExecute(leadX, trickSCS)),
		seed(doctor, 0, fzModeSequential, prep, sjis, hiddenExecute(leadYa, trickEnc)),
		seed(doctor, 0, fzModeSequential, prep, sjis2004, hiddenExecute(leadMe, trickEnc)),
		// Found by this target: a hidden EXECUTE whose argument is a
		// plain literal, so the analysis's own reading does not parse.
		seed(doctor, 0, fzModeSequential, prep, scsOff, op(fzOpHidden, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0)),
		// Leads that are not UTF-8: SJIS 0x81 and BIG5 0xA5 before a
		// backslash.
		seed(doctor, 0, fzModeSequential, sjis, hiddenInsert(5, trickEnc, 0)),
		seed(doctor, 0, fzModePipelined, big5, hiddenInsert(7, trickEnc, 0)),
		// Every trick, lead and closer once.
		seed(doctor, 0, fzModePipelined, scsOff, sjis, hiddenInsert(1, 2, 2), hiddenInsert(2, 3, 3), hiddenInsert(3, 4, 4), hiddenInsert(4, 5, 5), hiddenInsert(8, 6, 0)),
	)

	// grouped adds seeds of doctor's running stmts, per at a time, in
	// mode: fewer sessions, so a shorter seed run.
	grouped := func(mode, per int, stmts ...[]byte) {
		for len(stmts) > 0 {
			n := min(per, len(stmts))
			add(seed(doctor, 0, mode, stmts[:n]...))
			stmts = stmts[n:]
		}
	}
	var stmts [][]byte
	// Every name spelling of patients, with a marker written by doctor.
	for name := range 17 {
		stmts = append(stmts, insert(0, 0, name, name, 0, 0, 0))
	}
	grouped(fzModeSequential, fzMaxStmts, stmts...)
	// Every literal spelling and value expression.
	stmts = nil
	for lit := range 24 {
		stmts = append(stmts, insert(0, 1, 0, lit, 0, 0, lit))
	}
	grouped(fzModeSequential, fzMaxStmts, stmts...)
	stmts = nil
	for expr := range 14 {
		stmts = append(stmts, insert(1, 0, 2, 0, expr, 0, 0))
	}
	grouped(fzModeSequential, fzMaxStmts, stmts...)
	// Every insert form, on both tables; dob; two columns, spelled.
	stmts = nil
	for form := range 7 {
		stmts = append(stmts, insert(form%2, form%2, 0, form, 0, form, 0))
	}
	stmts = append(stmts, insert(0, 2, 0, 0, 0, 0, 0), op(fzOpInsert, 0, 0, 1, 5, 0, 1, 1, 3, 3, 0, 0, 0, 0, 4, 1, 0, 2, 3))
	grouped(fzModeSequential, fzMaxStmts, stmts...)

	// Settings before writes: each encoding, standard_conforming_strings
	// spelling and search_path, then an insert; a transaction with
	// savepoints.
	stmts = nil
	for enc := range 18 {
		stmts = append(stmts, op(fzOpEncoding, enc, enc%11), insert(0, 0, 0, 0, 0, 0, 0))
	}
	grouped(fzModeSequential, fzMaxStmts, stmts...)
	stmts = nil
	for form := range 13 {
		stmts = append(stmts, op(fzOpSCS, form%8, form), insert(0, 0, 0, 11, 0, 0, 0))
	}
	grouped(fzModePipelined, fzMaxStmts, stmts...)
	stmts = nil
	for sp := range 10 {
		stmts = append(stmts, op(fzOpSearchPath, sp), insert(0, 0, 0, 0, 0, 0, 0))
	}
	grouped(fzModeSequential, fzMaxStmts, stmts...)
	add(seed(doctor, 0, fzModeSequential, op(fzOpTx, 0), op(fzOpTx, 3), insert(0, 0, 0, 1, 0, 0, 0), op(fzOpTx, 4), op(fzOpTx, 1)))

	// update: table, column, sp, table spelling, sp, sp, column spelling,
	// literal, expression, where, [where's choices].
	for where, extra := range [][]int{nil, {0}, nil, {0, 0, 0}, nil} {
		add(seed(doctor, 0, fzModeSequential, op(fzOpUpdate, append([]int{where % 2, 0, 0, 0, 0, 0, 0, 0, 0, where}, extra...)...)))
	}
	add(seed(doctor, 0, fzModeSequential, op(fzOpUpdate, 0, 0, 0, 0, 0, 0, 0, 0, 11, 2))) // SET ssn = convert_to(name, 'UTF8') WHERE true
	add(seed(mallory, 0, fzModeSequential, op(fzOpUpdate, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2))) // no write grant
	// select: table, column, table spelling, form, [form's choices].
	for form, n := range []int{8, 5, 1, 3, 1, 1} {
		add(seed(doctor, 0, fzModeSequential, op(fzOpSelect, append([]int{0, 0, 0, form}, make([]int, n)...)...)))
	}
	// prepare, then execute: sp, sp, literal, expression.
	for typ := range 6 {
		add(seed(doctor, 0, fzModeSequential, op(fzOpPrepare, typ%2, 0, typ, 0, 0, typ%3, 0, 0), op(fzOpExecute, 0, 0, typ, 0)))
	}
	// do: doctor: table spelling, literal, form; mallory: literal, form.
	for form := range 5 {
		add(seed(doctor, 0, fzModeSequential, op(fzOpDo, 0, 0, form)))
		add(seed(mallory, 0, fzModeSequential, op(fzOpDo, 0, form)))
	}
	// copy: table, column, lead, column spelling, swap, format, options,
	// sp, table spelling.
	for lead := range 7 {
		add(seed(doctor, 0, fzModeSequential, sjis, op(fzOpCopy, 0, 0, lead, 0, lead%2, lead%4, 0, 0, 0)))
		add(seed(doctor, 0, fzModePipelined, op(fzOpCopy, lead%2, lead%3, lead, lead%5, lead%2, lead%4, lead%3, 0, lead%17), insert(0, 0, 0, 0, 0, 0, 0)))
	}
	add(seed(doctor, 2, fzModePipelined, op(fzOpCopy, 1, 1, 1, 1, 0, 0, 1, 0, 2)))
	add(seed(mallory, 0, fzModeSequential, op(fzOpCopy, 0, 0, 0, 0, 0, 0, 0, 0, 0)))
	// param: table, column, placeholder, table spelling, form, column
	// spelling, parameter types.
	for p := range 6 {
		add(seed(doctor, 0, fzModeExtended, op(fzOpParam, p%2, 0, p, 0, p%3, 0, p%5)))
	}
	add(seed(mallory, 0, fzModeExtended, op(fzOpParam, 0, 0, 0, 0, 0, 0, 0)))
	add(seed(mallory, 0, fzModeSequential, insert(0, 0, 0, 0, 0, 0, 0)))
	return seeds
}

// TestFuzzInvariantSeeds checks, without PostgreSQL, that the seeds
// generate the statements they are meant to, the known attacks included.
func TestFuzzInvariantSeeds(t *testing.T) {
	var all []string
	for _, s := range fzSeeds() {
		g := fzGenerate(s)
		if len(g.stmts) == 0 {
			t.Fatalf("seed %q generates no statement", s)
		}
		var sqls []string
		for _, st := range g.stmts {
			sqls = append(sqls, st.sql)
		}
		all = append(all, strings.Join(sqls, " ⏎ "))
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		`SET standard_conforming_strings = off ⏎ SELECT 'x\''; INSERT INTO patients (name, ssn) VALUES ($$fzname$$, $$FZ`,
		`SET client_encoding = 'SJIS' ⏎ SELECT E'ゃ\'; INSERT INTO patients (name, ssn) VALUES ($$fzname$$, $$FZ`,
		`SET client_encoding = 'SHIFT_JIS_2004' ⏎ SELECT E'め_\'; INSERT INTO patients`,
		`SELECT E'ゃ\'; EXECUTE fzp ($$FZ`,
		`SELECT E'め_\'; EXECUTE fzp ($$FZ`,
		`SET client_encoding = 'BIG5' ⏎ SELECT E'奥\'; INSERT INTO patients`,
		`PREPARE fzp(text) AS INSERT INTO patients (name, ssn) VALUES ('fz', $1)`,
		`DO $$ BEGIN INSERT INTO patients (name, ssn) VALUES ('fz', 'FZ`,
		`COPY patients (name, ssn) FROM STDIN (FORMAT csv, ESCAPE '\')`,
		`UPDATE patients SET ssn = convert_to(name, 'UTF8') WHERE true`,
		`INSERT INTO visits (patient_ssn) VALUES (CAST($1 AS bytea))`,
		`INSERT INTO U&"p\0061tients" (name, ssn)`,
		`INSERT INTO PUBLIC.PATIENTS (name, ssn)`,
		`$t$FZ`, `U&'\0046Z`, `'ゃ\FZ`, `'奥\FZ`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no seed generates %q", want)
		}
	}
}
