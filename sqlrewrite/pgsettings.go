package sqlrewrite

import (
	pg_query "github.com/pganalyze/pg_query_go/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// UPDATE pg_settings SET setting = … changes a setting like set_config does
// (pg_settings' update rule calls it), but no set_config appears in the
// text: the proxy would not see role or search_path change. Settings are
// changed with SET (or a set_config the proxy can follow) instead.
func updatesSettings(m protoreflect.Message) bool {
	found := false
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if u, ok := m.Interface().(*pg_query.UpdateStmt); ok && u.GetRelation().GetRelname() == "pg_settings" {
			found = true
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Kind() != protoreflect.MessageKind || fd.IsMap() {
				return !found
			}
			if fd.IsList() {
				l := v.List()
				for i := 0; i < l.Len() && !found; i++ {
					visit(l.Get(i).Message())
				}
				return !found
			}
			visit(v.Message())
			return !found
		})
	}
	visit(m)
	return found
}

var errSettingsUpdate = refuse("", "changing settings by UPDATE pg_settings is not supported through pgcloak: use SET")
