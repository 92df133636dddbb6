package sqlrewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Generic traversal, through protobuf reflection, for the node types the
// analysis does not model one by one: whatever they contain is still seen.

// innerMessage returns the message a Node wraps, or nil.
func innerMessage(n *pg_query.Node) protoreflect.Message {
	if n == nil {
		return nil
	}
	m := n.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message()
}

// eachChildNode calls fn for every Node directly or indirectly (through
// non-Node messages such as TypeName or WindowDef) inside n, without
// descending into those Nodes.
func eachChildNode(n *pg_query.Node, fn func(*pg_query.Node) error) error {
	m := innerMessage(n)
	if m == nil {
		return nil
	}
	return eachNodeIn(m, fn)
}

func eachNodeIn(m protoreflect.Message, fn func(*pg_query.Node) error) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = visitMessage(l.Get(i).Message(), fn)
			}
		} else {
			err = visitMessage(v.Message(), fn)
		}
		return err == nil
	})
	return err
}

func visitMessage(m protoreflect.Message, fn func(*pg_query.Node) error) error {
	if n, ok := m.Interface().(*pg_query.Node); ok {
		return fn(n)
	}
	return eachNodeIn(m, fn)
}

// rangeVarsIn collects the RangeVars in a tree. RangeVar fields that are
// not wrapped in a Node (InsertStmt.relation and the like) are included.
func rangeVarsIn(m protoreflect.Message) []*pg_query.RangeVar {
	var out []*pg_query.RangeVar
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if rv, ok := m.Interface().(*pg_query.RangeVar); ok {
			out = append(out, rv)
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
				return true
			}
			if fd.IsList() {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					visit(l.Get(i).Message())
				}
				return true
			}
			visit(v.Message())
			return true
		})
	}
	visit(m)
	return out
}
