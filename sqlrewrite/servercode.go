package sqlrewrite

import pg_query "github.com/pganalyze/pg_query_go/v5"

// serverCode names the server-side code a statement creates or runs, whose
// SQL the proxy never sees: built at run time (EXECUTE in PL/pgSQL, format,
// string concatenation), it can write plaintext into an encrypted column,
// copy another row's ciphertext, or create objects the proxy does not
// know, whatever names its text spells. "" when there is none.
//
// Calling a function from a query is not counted: functions come from
// their owners, and the roles that may create them through the proxy are
// the ones allowed server-side code. CALL is, since a procedure exists to
// change data.
func serverCode(n *pg_query.Node) string {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_DoStmt:
		return "DO"
	case *pg_query.Node_CreateFunctionStmt:
		if x.CreateFunctionStmt.GetIsProcedure() {
			return "CREATE PROCEDURE"
		}
		return "CREATE FUNCTION"
	case *pg_query.Node_CallStmt:
		return "CALL"
	case *pg_query.Node_CreatePlangStmt:
		return "CREATE LANGUAGE"
	case *pg_query.Node_CreateEventTrigStmt:
		return "CREATE EVENT TRIGGER"
	case *pg_query.Node_CreateTransformStmt:
		return "CREATE TRANSFORM"
	}
	return ""
}
