package sqlrewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// forEachColumnRef calls fn for every ColumnRef under n. The common node
// types are walked directly (reflection costs as much as the analysis
// itself); every other type falls back to the reflective walk, so nothing
// is missed.
func forEachColumnRef(n *pg_query.Node, fn func(*pg_query.ColumnRef)) {
	if n == nil {
		return
	}
	each := func(ns []*pg_query.Node) {
		for _, c := range ns {
			forEachColumnRef(c, fn)
		}
	}
	switch x := n.Node.(type) {
	case nil, *pg_query.Node_AConst, *pg_query.Node_ParamRef, *pg_query.Node_String_,
		*pg_query.Node_Integer, *pg_query.Node_Float, *pg_query.Node_Boolean,
		*pg_query.Node_RangeVar, *pg_query.Node_SetToDefault, *pg_query.Node_AStar,
		*pg_query.Node_SqlvalueFunction:
	case *pg_query.Node_ColumnRef:
		fn(x.ColumnRef)
	case *pg_query.Node_AExpr:
		forEachColumnRef(x.AExpr.GetLexpr(), fn)
		forEachColumnRef(x.AExpr.GetRexpr(), fn)
	case *pg_query.Node_BoolExpr:
		each(x.BoolExpr.GetArgs())
	case *pg_query.Node_List:
		each(x.List.GetItems())
	case *pg_query.Node_ResTarget:
		each(x.ResTarget.GetIndirection())
		forEachColumnRef(x.ResTarget.GetVal(), fn)
	case *pg_query.Node_TypeCast:
		forEachColumnRef(x.TypeCast.GetArg(), fn)
		each(x.TypeCast.GetTypeName().GetTypmods())
		each(x.TypeCast.GetTypeName().GetArrayBounds())
	case *pg_query.Node_NullTest:
		forEachColumnRef(x.NullTest.GetArg(), fn)
	case *pg_query.Node_FuncCall:
		f := x.FuncCall
		each(f.GetArgs())
		each(f.GetAggOrder())
		forEachColumnRef(f.GetAggFilter(), fn)
		windowColumnRefs(f.GetOver(), fn)
	case *pg_query.Node_SortBy:
		forEachColumnRef(x.SortBy.GetNode(), fn)
	case *pg_query.Node_SubLink:
		forEachColumnRef(x.SubLink.GetTestexpr(), fn)
		forEachColumnRef(x.SubLink.GetSubselect(), fn)
	case *pg_query.Node_JoinExpr:
		forEachColumnRef(x.JoinExpr.GetLarg(), fn)
		forEachColumnRef(x.JoinExpr.GetRarg(), fn)
		forEachColumnRef(x.JoinExpr.GetQuals(), fn)
	case *pg_query.Node_RangeSubselect:
		forEachColumnRef(x.RangeSubselect.GetSubquery(), fn)
	case *pg_query.Node_SelectStmt:
		selectColumnRefs(x.SelectStmt, fn)
	case *pg_query.Node_InsertStmt:
		s := x.InsertStmt
		withColumnRefs(s.GetWithClause(), fn)
		each(s.GetCols())
		forEachColumnRef(s.GetSelectStmt(), fn)
		each(s.GetReturningList())
		if oc := s.GetOnConflictClause(); oc != nil {
			walkMessageRefs(oc.ProtoReflect(), fn)
		}
	case *pg_query.Node_UpdateStmt:
		s := x.UpdateStmt
		withColumnRefs(s.GetWithClause(), fn)
		each(s.GetTargetList())
		forEachColumnRef(s.GetWhereClause(), fn)
		each(s.GetFromClause())
		each(s.GetReturningList())
	case *pg_query.Node_DeleteStmt:
		s := x.DeleteStmt
		withColumnRefs(s.GetWithClause(), fn)
		each(s.GetUsingClause())
		forEachColumnRef(s.GetWhereClause(), fn)
		each(s.GetReturningList())
	default:
		_ = eachChildNode(n, func(c *pg_query.Node) error {
			forEachColumnRef(c, fn)
			return nil
		})
	}
}

func selectColumnRefs(s *pg_query.SelectStmt, fn func(*pg_query.ColumnRef)) {
	if s == nil {
		return
	}
	for _, list := range [][]*pg_query.Node{s.GetDistinctClause(), s.GetTargetList(), s.GetFromClause(),
		s.GetGroupClause(), s.GetWindowClause(), s.GetValuesLists(), s.GetSortClause(), s.GetLockingClause()} {
		for _, c := range list {
			forEachColumnRef(c, fn)
		}
	}
	for _, c := range []*pg_query.Node{s.GetWhereClause(), s.GetHavingClause(), s.GetLimitOffset(), s.GetLimitCount()} {
		forEachColumnRef(c, fn)
	}
	if s.GetIntoClause() != nil {
		walkMessageRefs(s.GetIntoClause().ProtoReflect(), fn)
	}
	withColumnRefs(s.GetWithClause(), fn)
	selectColumnRefs(s.GetLarg(), fn)
	selectColumnRefs(s.GetRarg(), fn)
}

func withColumnRefs(w *pg_query.WithClause, fn func(*pg_query.ColumnRef)) {
	for _, c := range w.GetCtes() {
		forEachColumnRef(c, fn)
	}
}

func windowColumnRefs(w *pg_query.WindowDef, fn func(*pg_query.ColumnRef)) {
	if w != nil {
		walkMessageRefs(w.ProtoReflect(), fn)
	}
}

// walkMessageRefs is the reflective walk of a message that is not a Node.
func walkMessageRefs(m protoreflect.Message, fn func(*pg_query.ColumnRef)) {
	_ = eachNodeIn(m, func(c *pg_query.Node) error {
		forEachColumnRef(c, fn)
		return nil
	})
}
