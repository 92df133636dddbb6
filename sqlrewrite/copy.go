package sqlrewrite

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// copyStmt plans a COPY. On a relation with encrypted columns only COPY …
// FROM STDIN / TO STDOUT is possible (the proxy must see the data), with a
// known column list and options whose effect on the data the proxy
// understands. COPY without encrypted columns is KindCopy without a plan
// when it goes through STDIN/STDOUT, KindOther for server files.
func (a *analyzer) copyStmt(cs *pg_query.CopyStmt, st *Statement) error {
	stdio := cs.GetFilename() == "" && !cs.GetIsProgram()
	st.Kind = KindOther
	if stdio {
		st.Kind = KindCopy
	}
	if !a.deep {
		return nil
	}
	if q := cs.GetQuery(); q != nil {
		return a.copyQuery(q)
	}
	rv := cs.GetRelation()
	rel, resolved := a.lookupRelation(rv.GetSchemaname(), rv.GetRelname())
	if err := a.pin(rv, resolved); err != nil {
		return err
	}
	if rel == nil {
		return a.plain(cs.GetWhereClause(), &scope{items: []*item{{name: rv.GetRelname()}}}, "COPY … WHERE")
	}
	if err := unknownView(rel); err != nil {
		return err
	}
	a.touched = true
	name := rel.Schema + "." + rel.Name
	if !stdio {
		return refuse("", "COPY of %s, which has encrypted columns, to or from a server file or program is not supported", name)
	}
	plan := &CopyPlan{Relation: rel, From: cs.GetIsFrom()}
	if err := a.copyColumns(cs, plan); err != nil {
		return err
	}
	f, err := copyFormat(cs.GetOptions(), plan)
	if err != nil {
		return err
	}
	plan.Format = f
	if w := cs.GetWhereClause(); w != nil {
		it := &item{name: rv.GetRelname(), schema: rel.Schema, rel: rel}
		it.cols, it.complete = a.relationColumns(rel)
		if err := a.noEncryptedRefs(w, &scope{items: []*item{it}}, "COPY … WHERE"); err != nil {
			return err
		}
	}
	for _, r := range plan.Rules {
		switch {
		case r == nil:
		case plan.From:
			a.wrote(r)
		default:
			a.outputs(r)
		}
	}
	st.Copy = plan
	return nil
}

// copyQuery refuses COPY (query) TO STDOUT over encrypted data for now:
// its rows have no column origins to decrypt by.
func (a *analyzer) copyQuery(q *pg_query.Node) error {
	saved := a.touched
	a.touched = false
	sh, err := a.nestedShape(q)
	touched := a.touched
	a.touched = saved || touched
	if err != nil {
		return err
	}
	if touched {
		return refuse("", "COPY (query) over relations with encrypted columns is not supported")
	}
	return a.discardShape(sh)
}

// copyColumns fills the plan's column list; without one in the statement
// the relation's is written into it, so that a stale list makes PostgreSQL
// reject the COPY instead of shifting values between columns.
func (a *analyzer) copyColumns(cs *pg_query.CopyStmt, plan *CopyPlan) error {
	rel := plan.Relation
	cols := nodeStrings(cs.GetAttlist())
	if len(cols) == 0 {
		if rel.Columns == nil {
			return refuse("", "COPY of %s.%s needs a column list: its columns are unknown", rel.Schema, rel.Name)
		}
		cols = rel.Columns
		quoted := make([]string, len(cols))
		for i, c := range cols {
			quoted[i] = quoteIdent(c)
		}
		pos, err := a.relationNameEnd(cs.GetRelation().GetLocation(), false)
		if err != nil {
			return err
		}
		if err := a.addEdit(Edit{Start: pos, End: pos, Text: " (" + strings.Join(quoted, ", ") + ")"}); err != nil {
			return err
		}
	}
	plan.Columns = append([]string(nil), cols...)
	for _, c := range cols {
		plan.Rules = append(plan.Rules, rel.Encrypted[c])
	}
	return nil
}

// copyFormat reads the options of a COPY on encrypted columns.
func copyFormat(opts []*pg_query.Node, plan *CopyPlan) (CopyFormat, error) {
	f := CopyFormat{Kind: "text"}
	var delim, null, quote, escape *string
	for _, o := range opts {
		d := o.GetDefElem()
		name := d.GetDefname()
		switch name {
		case "format":
			s, _ := defString(d)
			f.Kind = strings.ToLower(s)
			if f.Kind != "text" && f.Kind != "csv" && f.Kind != "binary" {
				return f, refuse("", "COPY format %s is not supported", f.Kind)
			}
		case "delimiter", "null", "quote", "escape":
			s, ok := defString(d)
			if !ok {
				return f, refuse("", "COPY option %s needs a string", name)
			}
			switch name {
			case "delimiter":
				delim = &s
			case "null":
				null = &s
			case "quote":
				quote = &s
			default:
				escape = &s
			}
		case "header":
			h, ok := defHeader(d)
			if !ok {
				return f, refuse("", "unsupported COPY HEADER value")
			}
			f.Header = h
		case "freeze":
			// Harmless: it only changes how the rows are stored.
		case "force_quote", "force_not_null", "force_null":
			if r := forcedEncrypted(d, plan); r != "" {
				return f, refuse(r, "COPY option %s on encrypted column %s is not supported", strings.ToUpper(name), r)
			}
		default:
			return f, refuse("", "COPY option %s on a relation with encrypted columns is not supported", strings.ToUpper(name))
		}
	}
	return f, copyDefaults(&f, delim, null, quote, escape)
}

// copyDefaults applies PostgreSQL's defaults and checks single bytes.
func copyDefaults(f *CopyFormat, delim, null, quote, escape *string) error {
	switch f.Kind {
	case "binary":
		if delim != nil || null != nil || quote != nil || escape != nil {
			return refuse("", "COPY BINARY takes no DELIMITER, NULL, QUOTE or ESCAPE")
		}
		return nil
	case "csv":
		f.Delimiter, f.Null, f.Quote = ',', "", '"'
	default:
		f.Delimiter, f.Null = '\t', `\N`
		if quote != nil || escape != nil {
			return refuse("", "COPY QUOTE and ESCAPE are only available in CSV mode")
		}
	}
	var err error
	one := func(s *string, dst *byte) {
		if s == nil || err != nil {
			return
		}
		if len(*s) != 1 {
			err = refuse("", "COPY delimiter, quote and escape must be a single one-byte character")
			return
		}
		*dst = (*s)[0]
	}
	one(delim, &f.Delimiter)
	one(quote, &f.Quote)
	f.Escape = f.Quote
	one(escape, &f.Escape)
	if f.Kind != "csv" {
		f.Escape = 0
	}
	if null != nil {
		f.Null = *null
	}
	return err
}

func defString(d *pg_query.DefElem) (string, bool) {
	if s := d.GetArg().GetString_(); s != nil {
		return s.GetSval(), true
	}
	return "", false
}

// defHeader reads HEADER: true/false/match, as defGetBoolean would.
func defHeader(d *pg_query.DefElem) (bool, bool) {
	arg := d.GetArg()
	switch {
	case arg == nil:
		return true, true
	case arg.GetBoolean() != nil:
		return arg.GetBoolean().GetBoolval(), true
	case arg.GetInteger() != nil:
		switch arg.GetInteger().GetIval() {
		case 0:
			return false, true
		case 1:
			return true, true
		}
		return false, false
	case arg.GetString_() != nil:
		s := arg.GetString_().GetSval()
		if strings.EqualFold(s, "match") {
			return true, true
		}
		return parseBool(s)
	}
	return false, false
}

// forcedEncrypted returns the encrypted column a FORCE_* option names, if
// any (* names them all).
func forcedEncrypted(d *pg_query.DefElem, plan *CopyPlan) string {
	if d.GetArg().GetAStar() != nil {
		for _, r := range plan.Rules {
			if r != nil {
				return r.Name()
			}
		}
		return ""
	}
	for _, c := range nodeStrings(d.GetArg().GetList().GetItems()) {
		if r := plan.Relation.Encrypted[c]; r != nil {
			return r.Name()
		}
	}
	return ""
}
