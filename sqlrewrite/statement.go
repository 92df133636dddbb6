package sqlrewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// statement classifies and analyzes one statement into st.
func (a *analyzer) statement(n *pg_query.Node, st *Statement) error {
	st.ServerCode = serverCode(n)
	st.Unlistens = n.GetUnlistenStmt() != nil || n.GetDiscardStmt().GetTarget() == pg_query.DiscardMode_DISCARD_ALL
	switch x := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		return a.selectTop(x.SelectStmt, st)
	case *pg_query.Node_InsertStmt:
		st.Kind = KindInsert
		return a.dmlTop(n)
	case *pg_query.Node_UpdateStmt:
		st.Kind = KindUpdate
		return a.dmlTop(n)
	case *pg_query.Node_DeleteStmt:
		st.Kind = KindDelete
		return a.dmlTop(n)
	case *pg_query.Node_MergeStmt:
		st.Kind = KindOther
		return a.refuseIfMentions(n, "MERGE")
	case *pg_query.Node_TransactionStmt:
		a.transaction(x.TransactionStmt, st)
		return nil
	case *pg_query.Node_VariableSetStmt:
		return a.variableSet(x.VariableSetStmt, st)
	case *pg_query.Node_DiscardStmt:
		a.discard(x.DiscardStmt, st)
		return nil
	case *pg_query.Node_PrepareStmt:
		return a.prepare(x.PrepareStmt, st)
	case *pg_query.Node_ExecuteStmt:
		return a.execute(x.ExecuteStmt, st)
	case *pg_query.Node_DeallocateStmt:
		st.Kind, st.Deallocate = KindDeallocate, x.DeallocateStmt.GetName()
		return nil
	case *pg_query.Node_CopyStmt:
		return a.copyStmt(x.CopyStmt, st)
	case *pg_query.Node_ExplainStmt:
		return a.explain(x.ExplainStmt, st)
	case *pg_query.Node_CreateTableAsStmt:
		return a.createTableAs(x.CreateTableAsStmt, st)
	case *pg_query.Node_ViewStmt:
		return a.createView(x.ViewStmt, st)
	case *pg_query.Node_DeclareCursorStmt:
		return a.declareCursor(x.DeclareCursorStmt, st)
	case *pg_query.Node_CreateFunctionStmt:
		st.Kind = KindOther
		return a.bodyMentions(functionBody(x.CreateFunctionStmt, a.sql[st.Start:st.End]), "CREATE FUNCTION")
	case *pg_query.Node_DoStmt:
		st.Kind = KindOther
		return a.bodyMentions(defStrings(x.DoStmt.GetArgs(), "as"), "DO")
	case *pg_query.Node_IndexStmt:
		return a.createIndex(x.IndexStmt, st)
	case *pg_query.Node_AlterTableStmt:
		return a.alterTable(x.AlterTableStmt, st)
	case *pg_query.Node_CreateStmt:
		return a.createTable(x.CreateStmt, st)
	case *pg_query.Node_RenameStmt:
		return a.rename(x.RenameStmt, st)
	case *pg_query.Node_AlterObjectSchemaStmt:
		return a.setSchema(x.AlterObjectSchemaStmt, st)
	case *pg_query.Node_DropStmt, *pg_query.Node_CreateSeqStmt:
		st.Kind = KindDDL
		return nil
	}
	return a.utility(n, st)
}

// selectTop is a top-level SELECT (or VALUES, TABLE, set operation).
func (a *analyzer) selectTop(s *pg_query.SelectStmt, st *Statement) error {
	st.Kind = KindSelect
	into := leftmostInto(s)
	if into != nil {
		st.Kind = KindDDL
	}
	if !a.deep {
		return nil
	}
	if a.nested == 0 {
		a.markSetConfig(s)
	}
	sh, err := a.selectStmt(s, nil)
	if err != nil {
		return err
	}
	if into != nil {
		return a.intoPlain(sh, "SELECT INTO")
	}
	return a.output(sh)
}

// leftmostInto finds SELECT … INTO, which PostgreSQL takes from the
// leftmost branch of a set operation.
func leftmostInto(s *pg_query.SelectStmt) *pg_query.IntoClause {
	for s.GetOp() != pg_query.SetOperation_SETOP_NONE && s.GetLarg() != nil {
		if s.GetIntoClause() != nil {
			return s.GetIntoClause()
		}
		s = s.GetLarg()
	}
	return s.GetIntoClause()
}

// dmlTop is a top-level INSERT, UPDATE or DELETE.
func (a *analyzer) dmlTop(n *pg_query.Node) error {
	if !a.deep {
		return nil
	}
	sh, err := a.dml(n, nil)
	if err != nil {
		return err
	}
	return a.output(sh)
}

// output records what a statement returns to the client.
func (a *analyzer) output(sh *shape) error {
	a.stmt.Columns = a.stmt.Columns[:0]
	for _, c := range sh.cols {
		r := c.v.rule
		if c.v.kind != valEnc {
			r = nil
		}
		a.stmt.Columns = append(a.stmt.Columns, r)
	}
	for _, c := range sh.cols {
		v := c.v
		if v.kind != valEnc {
			for _, l := range c.leaves {
				a.flowOut(l)
			}
			continue
		}
		if v.scalar {
			return refuse(v.rule.Name(), "a scalar subquery returning encrypted column %s in the result is not supported; join instead", v.rule.Name())
		}
		a.outputs(v.rule)
		// Every branch of a set operation may return its own column.
		for _, l := range c.leaves {
			if l.kind == valEnc {
				a.outputs(l.rule)
			}
		}
	}
	return nil
}

// intoPlain refuses copying ciphertext into a new table, whose columns
// pgcloak knows nothing about.
func (a *analyzer) intoPlain(sh *shape, what string) error {
	for _, c := range sh.cols {
		if c.v.kind == valEnc {
			return refuse(c.v.rule.Name(), "%s would copy encrypted column %s into a new table without encryption rules", what, c.v.rule.Name())
		}
		for _, l := range c.leaves {
			a.flowOut(l)
		}
	}
	return nil
}

// nestedStatement analyzes the statement inside PREPARE, EXPLAIN and the
// like into inner, with its own parameters when params is non-nil.
func (a *analyzer) nestedStatement(n *pg_query.Node, inner *Statement, params *paramSet) error {
	saveStmt, saveParams := a.stmt, a.params
	a.stmt = inner
	if params != nil {
		a.params = params
	}
	a.nested++
	defer func() {
		a.stmt, a.params = saveStmt, saveParams
		a.nested--
	}()
	return a.statement(n, inner)
}
