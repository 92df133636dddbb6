package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/proxy/internal/wire"
)

// The tests are event scripts, one line per event:
//
//	> Kind args…   the proxy sends a request (Push); "=> not queued" when
//	               nothing will answer it
//	< Message [s]  the server sends a message (Server, or Ready with
//	               status s); "=> …" is the event: action, request, "last"
//	               (the driver then calls Complete), skipped requests
//	! discard      the proxy failed the head's result (DiscardUntilSync)
//	= state        the books: statements, portals, queue, status, batch
//
// A statement's value is "s" and the number of the line whose Parse made
// it; a portal's "p" and its Bind's line. Name "_" is the unnamed one.
var scripts = []struct {
	name  string
	lines []string
}{
	{"simple query with rows", []string{
		"> Query",
		"< RowDescription => forward Query",
		"< DataRow => forward Query",
		"< CommandComplete => forward Query",
		"< ReadyForQuery I => forward Query last",
		"= stmts{} portals{} queue[] I closed",
	}},
	{"query string of several statements, one empty", []string{
		"> Query",
		"< CommandComplete => forward Query",
		"< EmptyQueryResponse => forward Query",
		"< CommandComplete => forward Query",
		"< ReadyForQuery T => forward Query last",
		"= stmts{} portals{} queue[] T closed",
	}},
	{"extended batch: every answer matched, portal gone at idle", []string{
		"> Parse a",
		"> Bind _ a",
		"> Describe P _",
		"> Execute _",
		"> Sync",
		"= stmts{a:s1} portals{_:p2} queue[Parse \"a\", Bind \"\", Describe portal \"\", Execute \"\", Sync] I closed",
		"< ParseComplete => forward Parse \"a\" last",
		"< BindComplete => forward Bind \"\" last",
		"< RowDescription => forward Describe portal \"\" last",
		"< DataRow => forward Execute \"\"",
		"< CommandComplete => forward Execute \"\" last",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{a:s1} portals{} queue[] I closed",
	}},
	{"describe statement: parameters then columns, or no data", []string{
		"> Parse a",
		"> Describe S a",
		"> Parse b",
		"> Describe S b",
		"> Sync",
		"< ParseComplete => forward Parse \"a\" last",
		"< ParameterDescription => forward Describe statement \"a\"",
		"< RowDescription => forward Describe statement \"a\" last",
		"< ParseComplete => forward Parse \"b\" last",
		"< ParameterDescription => forward Describe statement \"b\"",
		"< NoData => forward Describe statement \"b\" last",
		"< ReadyForQuery I => forward Sync last",
	}},
	{"hidden describe answered to the proxy only", []string{
		"> Parse _",
		"> Bind _ _",
		"> HiddenDescribe _",
		"> Execute _",
		"> Sync",
		"< ParseComplete => forward Parse \"\" last",
		"< BindComplete => forward Bind \"\" last",
		"< RowDescription => drop HiddenDescribe \"\" last",
		"< DataRow => forward Execute \"\"",
		"< PortalSuspended => forward Execute \"\" last",
		"< ReadyForQuery T => forward Sync last",
		"= stmts{_:s1} portals{_:p2} queue[] T closed",
	}},
	{"error skips the batch to Sync and undoes what it recorded", []string{
		"> Parse a",
		"> Bind p a",
		"> Execute p",
		"> Close S old",
		"> Parse _",
		"> Sync",
		"= stmts{_:s5 a:s1} portals{p:p2} queue[Parse \"a\", Bind \"p\", Execute \"p\", Close statement \"old\", Parse \"\", Sync] I closed",
		"< ParseComplete => forward Parse \"a\" last",
		"< ErrorResponse => forward Bind \"p\" skipped[Bind \"p\", Execute \"p\", Close statement \"old\", Parse \"\"]",
		"= stmts{a:s1} portals{} queue[Sync] I closed",
		"< ReadyForQuery E => forward Sync last",
		"= stmts{a:s1} portals{} queue[] E closed",
	}},
	{"skipped Close gives the statement back, skipped unnamed Parse the old one", []string{
		"> Parse old",
		"> Parse _",
		"> Sync",
		"< ParseComplete => forward Parse \"old\" last",
		"< ParseComplete => forward Parse \"\" last",
		"< ReadyForQuery I => forward Sync last",
		"> Parse bad",
		"> Close S old",
		"> Parse _",
		"> Close P nothing",
		"> Sync",
		"= stmts{_:s9 bad:s7} portals{} queue[Parse \"bad\", Close statement \"old\", Parse \"\", Close portal \"nothing\", Sync] I closed",
		"< ErrorResponse => forward Parse \"bad\" skipped[Parse \"bad\", Close statement \"old\", Parse \"\", Close portal \"nothing\"]",
		"= stmts{_:s2 old:s1} portals{} queue[Sync] I closed",
		"< ReadyForQuery I => forward Sync last",
	}},
	{"a rejected Parse of an existing name keeps the existing statement", []string{
		"> Parse a",
		"> Sync",
		"< ParseComplete => forward Parse \"a\" last",
		"< ReadyForQuery I => forward Sync last",
		"> Parse a",
		"> Sync",
		"= stmts{a:s1} portals{} queue[Parse \"a\", Sync] I closed",
		"< ErrorResponse => forward Parse \"a\" skipped[Parse \"a\"]",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{a:s1} portals{} queue[] I closed",
	}},
	{"a rejected unnamed Parse drops the unnamed statement", []string{
		"> Parse _",
		"> Sync",
		"< ParseComplete => forward Parse \"\" last",
		"< ReadyForQuery I => forward Sync last",
		"> Parse _",
		"> Sync",
		"< ErrorResponse => forward Parse \"\" skipped[Parse \"\"]",
		"= stmts{} portals{} queue[Sync] I closed",
	}},
	{"error before the Sync is sent: later requests get no answer", []string{
		"> Parse a",
		"> Bind _ a",
		"< ErrorResponse => forward Parse \"a\" skipped[Parse \"a\", Bind \"\"]",
		"= stmts{} portals{} queue[] I skipping",
		"> Execute _ => not queued",
		"> Close S a => not queued",
		"> Sync",
		"= stmts{} portals{} queue[Sync] I closed",
		"< ReadyForQuery I => forward Sync last",
		"> Parse b",
		"= stmts{b:s10} portals{} queue[Parse \"b\"] I open",
	}},
	{"a Query sent into a failed batch gets no ReadyForQuery", []string{
		"> Parse bad",
		"> Query",
		"> Sync",
		"< ErrorResponse => forward Parse \"bad\" skipped[Parse \"bad\", Query]",
		"< ReadyForQuery E => forward Sync last",
		"= stmts{} portals{} queue[] E closed",
	}},
	{"refused extended request: the proxy's error, then skip", []string{
		"> Parse a",
		"> Refused ext",
		"> Bind _ a",
		"> Sync",
		"< ParseComplete => forward Parse \"a\" last",
		"< ErrorResponse => replace Refused skipped[Refused, Bind \"\"]",
		"< ReadyForQuery E => forward Sync last",
		"= stmts{a:s1} portals{} queue[] E closed",
	}},
	{"refused simple request ends at its ReadyForQuery", []string{
		"> Refused simple",
		"< ErrorResponse => replace Refused",
		"< ReadyForQuery E => forward Refused last",
		"= stmts{} portals{} queue[] E closed",
	}},
	{"failed result: the rest of the Query's answer is dropped, its ReadyForQuery kept", []string{
		"> Query",
		"> Query",
		"< RowDescription => forward Query",
		"! discard",
		"< DataRow => drop Query",
		"< CommandComplete => drop Query",
		"< ErrorResponse => drop Query",
		"< ReadyForQuery I => forward Query last",
		"< RowDescription => forward Query",
	}},
	{"failed result in a batch: dropped up to the Sync", []string{
		"> Bind _ _",
		"> Execute _",
		"> Execute _",
		"> Sync",
		"> Query",
		"< BindComplete => forward Bind \"\" last",
		"< DataRow => forward Execute \"\"",
		"! discard",
		"< CommandComplete => drop Execute \"\" last",
		"< CommandComplete => drop Execute \"\" last",
		"< ReadyForQuery T => forward Sync last",
		"< CommandComplete => forward Query",
	}},
	{"COPY FROM STDIN by Query: a Sync sent during the COPY is swallowed", []string{
		"> Query",
		"> Sync copy",
		"= stmts{} portals{} queue[Query, Sync] I closed",
		"< CopyInResponse => forward Query skipped[Sync]",
		"> Sync copy => not queued",
		"< CommandComplete => forward Query",
		"< ReadyForQuery I => forward Query last",
		"= stmts{} portals{} queue[] I closed",
	}},
	{"COPY FROM STDIN by Execute: Syncs before CopyDone swallowed, the one after answered", []string{
		"> Parse _",
		"> Bind _ _",
		"> Execute _",
		"> Sync copy",
		"< ParseComplete => forward Parse \"\" last",
		"< BindComplete => forward Bind \"\" last",
		"< CopyInResponse => forward Execute \"\" skipped[Sync]",
		"> Sync",
		"< CommandComplete => forward Execute \"\" last",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{_:s1} portals{} queue[] I closed",
	}},
	{"COPY FROM STDIN that fails: the Sync after CopyFail is answered", []string{
		"> Query",
		"< CopyInResponse => forward Query",
		"< ErrorResponse => forward Query",
		"< ReadyForQuery I => forward Query last",
	}},
	{"a Sync sent during a COPY that never started is answered", []string{
		"> Query",
		"> Sync copy",
		"< ErrorResponse => forward Query",
		"< ReadyForQuery I => forward Query last",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{} portals{} queue[] I closed",
	}},
	{"COPY TO STDOUT", []string{
		"> Query",
		"< CopyOutResponse => forward Query",
		"< CopyData => forward Query",
		"< CopyDone => forward Query",
		"< CommandComplete => forward Query",
		"< ReadyForQuery I => forward Query last",
	}},
	{"function call", []string{
		"> FunctionCall",
		"< FunctionCallResponse => forward FunctionCall",
		"< ReadyForQuery I => forward FunctionCall last",
	}},
	{"the proxy's own batch: every answer its own, the status noted", []string{
		"> Internal",
		"< NoticeResponse => own Internal",
		"< DataRow => own Internal",
		"< ErrorResponse => own Internal",
		"< ReadyForQuery T => own Internal last",
		"= stmts{} portals{} queue[] T closed",
	}},
	{"messages that answer no request", []string{
		"< ParameterStatus => forward",
		"< NotificationResponse => forward",
		"< ErrorResponse => forward",
		"> Query",
		"< ParameterStatus => forward",
		"< NoticeResponse => forward",
		"< ReadyForQuery I => forward Query last",
		"< ReadyForQuery T => forward",
		"= stmts{} portals{} queue[] I closed",
	}},
	{"pipelined batches: a portal lives until its own transaction ends", []string{
		"> Bind a _",
		"> Sync",
		"> Bind b _",
		"> Sync",
		"< BindComplete => forward Bind \"a\" last",
		"< ReadyForQuery T => forward Sync last",
		"= stmts{} portals{a:p1 b:p3} queue[Bind \"b\", Sync] T closed",
		"< BindComplete => forward Bind \"b\" last",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{} portals{} queue[] I closed",
	}},
	{"pipelined batches: idle at the first Sync keeps the second batch's portal", []string{
		"> Bind a _",
		"> Sync",
		"> Bind b _",
		"> Sync",
		"< BindComplete => forward Bind \"a\" last",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{} portals{b:p3} queue[Bind \"b\", Sync] I closed",
	}},
	{"an error in the second batch leaves the first batch's records", []string{
		"> Parse a",
		"> Sync",
		"> Parse b",
		"> Bind _ b",
		"> Sync",
		"< ParseComplete => forward Parse \"a\" last",
		"< ReadyForQuery I => forward Sync last",
		"< ErrorResponse => forward Parse \"b\" skipped[Parse \"b\", Bind \"\"]",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{a:s1} portals{} queue[] I closed",
	}},
	{"a Sync swallowed by COPY counts in no portal's transaction", []string{
		"> Execute _",
		"> Sync copy",
		"> Sync",
		"> Bind p _",
		"> Sync",
		"< CopyInResponse => forward Execute \"\" skipped[Sync]",
		"< CommandComplete => forward Execute \"\" last",
		"< ReadyForQuery I => forward Sync last",
		"< BindComplete => forward Bind \"p\" last",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{} portals{} queue[] I closed",
	}},
	{"a Query skipped in a failed batch counts in no portal's transaction", []string{
		"> Parse bad",
		"> Query",
		"> Sync",
		"> Bind p _",
		"> Sync",
		"< ErrorResponse => forward Parse \"bad\" skipped[Parse \"bad\", Query]",
		"< ReadyForQuery I => forward Sync last",
		"< BindComplete => forward Bind \"p\" last",
		"< ReadyForQuery I => forward Sync last",
		"= stmts{} portals{} queue[] I closed",
	}},
	{"skipped portal Close gives the portal back", []string{
		"> Bind p _",
		"> Sync",
		"< BindComplete => forward Bind \"p\" last",
		"< ReadyForQuery T => forward Sync last",
		"> Parse bad",
		"> Close P p",
		"> Sync",
		"= stmts{bad:s5} portals{} queue[Parse \"bad\", Close portal \"p\", Sync] T closed",
		"< ErrorResponse => forward Parse \"bad\" skipped[Parse \"bad\", Close portal \"p\"]",
		"= stmts{} portals{p:p1} queue[Sync] T closed",
	}},
	{"a rejected Bind of an existing portal keeps it; a rejected new one is gone", []string{
		"> Bind p _",
		"> Sync",
		"< BindComplete => forward Bind \"p\" last",
		"< ReadyForQuery T => forward Sync last",
		"> Bind p _",
		"> Sync",
		"< ErrorResponse => forward Bind \"p\" skipped[Bind \"p\"]",
		"< ReadyForQuery E => forward Sync last",
		"= stmts{} portals{p:p1} queue[] E closed",
		"> Bind q _",
		"> Sync",
		"< ErrorResponse => forward Bind \"q\" skipped[Bind \"q\"]",
		"= stmts{} portals{p:p1} queue[Sync] E closed",
	}},
}

func TestScripts(t *testing.T) {
	for _, sc := range scripts {
		t.Run(sc.name, func(t *testing.T) {
			d := &driver{t: t, pl: New[string, string]()}
			for i, line := range sc.lines {
				d.step(i+1, line)
			}
		})
	}
}

type testRequest = Request[string, string]

// driver runs a script against a Pipeline.
type driver struct {
	t  *testing.T
	pl *Pipeline[string, string]
	// copying is the last Query or Execute sent, for "Sync copy".
	copying *testRequest
}

func (d *driver) step(n int, line string) {
	d.t.Helper()
	cmd, want, hasWant := strings.Cut(line, " => ")
	f := strings.Fields(cmd)
	var got string
	switch f[0] {
	case ">":
		r := d.request(n, f[1:])
		if !d.pl.Push(r) {
			got = "not queued"
		}
	case "<":
		got = d.server(f[1:])
	case "!":
		d.pl.DiscardUntilSync(d.pl.Head())
	case "=":
		want, got, hasWant = strings.Join(f[1:], " "), d.books(), true
	default:
		d.t.Fatalf("line %d: %q", n, line)
	}
	if hasWant || got != "" {
		if got != want {
			d.t.Errorf("line %d: %s\n got %s\nwant %s", n, cmd, got, want)
		}
	}
}

func name(s string) string {
	if s == "_" {
		return ""
	}
	return s
}

func target(s string) wire.Target {
	if s == "S" {
		return wire.TargetStatement
	}
	return wire.TargetPortal
}

func (d *driver) request(n int, f []string) *testRequest {
	r := &testRequest{}
	switch f[0] {
	case "Query":
		r.Kind = Query
		d.copying = r
	case "Parse":
		r.Kind, r.Name, r.Stmt = Parse, name(f[1]), fmt.Sprintf("s%d", n)
	case "Bind":
		r.Kind, r.Name, r.Portal = Bind, name(f[1]), fmt.Sprintf("p%d", n)
		r.Stmt = d.pl.Statement(name(f[2]))
	case "Describe":
		r.Kind, r.Target, r.Name = Describe, target(f[1]), name(f[2])
	case "HiddenDescribe":
		r.Kind, r.Target, r.Name = HiddenDescribe, wire.TargetPortal, name(f[1])
	case "Execute":
		r.Kind, r.Name = Execute, name(f[1])
		r.Portal = d.pl.Portal(r.Name)
		d.copying = r
	case "Close":
		r.Kind, r.Target, r.Name = Close, target(f[1]), name(f[2])
	case "Sync":
		r.Kind = Sync
		if len(f) > 1 && f[1] == "copy" {
			r.During = d.copying
		}
	case "FunctionCall":
		r.Kind = FunctionCall
	case "Refused":
		r.Kind, r.Simple, r.Refusal = Refused, f[1] == "simple", errors.New("refused")
	case "Internal":
		r.Kind = Internal
	default:
		d.t.Fatalf("request %q", f)
	}
	return r
}

// serverTypes are the server's message types by name.
var serverTypes = func() map[string]wire.ServerType {
	m := map[string]wire.ServerType{}
	for b := range 256 {
		t := wire.ServerType(b)
		if s := t.String(); !strings.HasPrefix(s, "backend message") {
			m[s] = t
		}
	}
	return m
}()

func (d *driver) server(f []string) string {
	var ev Event[string, string]
	if f[0] == "ReadyForQuery" {
		ev = d.pl.Ready(wire.TxStatus(f[1][0]))
	} else {
		typ, ok := serverTypes[f[0]]
		if !ok {
			d.t.Fatalf("server message %q", f[0])
		}
		ev = d.pl.Server(typ)
	}
	out := []string{ev.Action.String()}
	if ev.Req != nil {
		out = append(out, ev.Req.String())
	}
	if ev.Last {
		out = append(out, "last")
		if !d.pl.Complete(ev.Req) {
			d.t.Errorf("Complete(%s): not the head", ev.Req)
		}
		if !closed(ev.Req.Done()) {
			d.t.Errorf("%s completed but not done", ev.Req)
		}
	}
	if len(ev.Skipped) > 0 {
		var s []string
		for _, r := range ev.Skipped {
			s = append(s, r.String())
			if !closed(r.Done()) {
				d.t.Errorf("%s skipped but not done", r)
			}
		}
		out = append(out, "skipped["+strings.Join(s, ", ")+"]")
	}
	return strings.Join(out, " ")
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// books renders the pipeline's state as a state line of a script.
func (d *driver) books() string {
	show := func(m map[string]string) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			label := k
			if k == "" {
				label = "_"
			}
			parts = append(parts, label+":"+m[k])
		}
		return "{" + strings.Join(parts, " ") + "}"
	}
	stmts := map[string]string{}
	for n, s := range d.pl.Statements() {
		stmts[n] = s
	}
	portals := map[string]string{}
	for n, e := range d.pl.portals {
		portals[n] = e.portal
	}
	var queue []string
	for _, r := range d.pl.queue {
		queue = append(queue, r.String())
	}
	batch := "closed"
	switch {
	case d.pl.skipping:
		batch = "skipping"
	case d.pl.batchOpen:
		batch = "open"
	}
	return fmt.Sprintf("stmts%s portals%s queue[%s] %c %s", show(stmts), show(portals), strings.Join(queue, ", "), byte(d.pl.Status()), batch)
}

// A COMMIT that a request confirms ends the portals bound before it, though
// the ReadyForQuery that follows reports a transaction ("COMMIT; BEGIN"):
// a later Bind of the same name is a new portal, not the dead one kept.
func TestTransactionEndedDropsEarlierPortals(t *testing.T) {
	pl := New[string, string]()
	push := func(r *Request[string, string]) *Request[string, string] {
		t.Helper()
		if !pl.Push(r) {
			t.Fatalf("%v not queued", r)
		}
		return r
	}
	answer := func(typ wire.ServerType) {
		t.Helper()
		ev := pl.Server(typ)
		if ev.Last {
			pl.Complete(ev.Req)
		}
	}
	push(&Request[string, string]{Kind: Query})
	answer(wire.ServerCommandComplete)
	pl.Complete(pl.Ready(wire.TxInBlock).Req)
	push(&Request[string, string]{Kind: Parse, Name: "a", Stmt: "s-a"})
	push(&Request[string, string]{Kind: Bind, Name: "p1", Portal: "old"})
	push(&Request[string, string]{Kind: Sync})
	answer(wire.ServerParseComplete)
	answer(wire.ServerBindComplete)
	pl.Complete(pl.Ready(wire.TxInBlock).Req)
	if pl.Portal("p1") != "old" {
		t.Fatalf("portal p1 = %q", pl.Portal("p1"))
	}
	q := push(&Request[string, string]{Kind: Query}) // COMMIT; BEGIN
	answer(wire.ServerCommandComplete)
	pl.TransactionEnded(q)
	answer(wire.ServerCommandComplete)
	pl.Complete(pl.Ready(wire.TxInBlock).Req)
	if got := pl.Portal("p1"); got != "" {
		t.Fatalf("portal p1 = %q after COMMIT, want none", got)
	}
	push(&Request[string, string]{Kind: Bind, Name: "p1", Portal: "new"})
	if got := pl.Portal("p1"); got != "new" {
		t.Fatalf("portal p1 = %q, want the new one", got)
	}
	// A portal bound after the transaction's end is kept.
	ex := push(&Request[string, string]{Kind: Execute, Name: "p1"})
	push(&Request[string, string]{Kind: Bind, Name: "p2", Portal: "later"})
	pl.TransactionEnded(ex)
	if pl.Portal("p1") != "" || pl.Portal("p2") != "later" {
		t.Fatalf("portals p1 %q p2 %q", pl.Portal("p1"), pl.Portal("p2"))
	}
}
