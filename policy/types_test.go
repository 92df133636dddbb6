package policy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// withoutArray are the registered types PostgreSQL has no array type of.
var withoutArray = map[PGType]bool{PGUnknown: true}

// TestRegistry checks every registry entry is complete, its names and
// OIDs are its own, and its facts agree with pgx's type map (an
// independent copy of pg_type; keymap's TestRegistryMatchesPostgres
// checks them against a server).
func TestRegistry(t *testing.T) {
	m := pgtype.NewMap()
	names := map[string]PGType{}
	oids := map[uint32]PGType{}
	for p := range NumPGTypes {
		e := registry[p]
		if e.name == "" || e.sqlName == "" || e.oid == 0 || e.size == 0 || e.family == 0 {
			t.Errorf("%d: incomplete entry %+v", p, e)
			continue
		}
		if (e.arrayOID == 0) != withoutArray[p] {
			t.Errorf("%s: array type %d", p, e.arrayOID)
		}
		for _, oid := range []uint32{e.oid, e.arrayOID} {
			if q, dup := oids[oid]; dup && oid != 0 {
				t.Errorf("%s: OID %d is %s's too", p, oid, q)
			}
			oids[oid] = p
		}
		all := append([]string{e.name}, e.aliases...)
		if e.logical != "" && string(e.logical) != e.name {
			all = append(all, string(e.logical))
		}
		for _, n := range all {
			if q, dup := names[n]; dup {
				t.Errorf("%s: name %q is %s's too", p, n, q)
			}
			names[n] = p
		}
		checkLookups(t, p)
		checkPGX(t, m, p)
	}
}

// checkLookups: each of p's facts leads back to p.
func checkLookups(t *testing.T, p PGType) {
	t.Helper()
	if q, ok := LookupPGType(p.OID()); !ok || q != p {
		t.Errorf("%s: LookupPGType(%d) = %s, %v", p, p.OID(), q, ok)
	}
	if q, ok := LookupArrayType(p.ArrayOID()); p.ArrayOID() != 0 && (!ok || q != p) {
		t.Errorf("%s: LookupArrayType(%d) = %s, %v", p, p.ArrayOID(), q, ok)
	}
	if q, ok := LookupTypname(p.Name()); !ok || q != p {
		t.Errorf("%s: LookupTypname(%q) = %s, %v", p, p.Name(), q, ok)
	}
	lt := p.Logical()
	for _, n := range append([]string{p.Name(), p.SQLName()}, registry[p].aliases...) {
		if got, ok := ParseLogicalType(n); got != lt || ok != (lt != "") {
			t.Errorf("%s: ParseLogicalType(%q) = %q, %v; want %q", p, n, got, ok, lt)
		}
	}
	if lt == "" {
		return
	}
	if q, ok := lt.PGType(); !ok || q != p || !lt.Valid() || lt.OID() != p.OID() || lt.Size() != p.Size() {
		t.Errorf("%s: logical type %q does not lead back to it", p, lt)
	}
}

// checkPGX compares p's OIDs and names with pgx's default type map.
func checkPGX(t *testing.T, m *pgtype.Map, p PGType) {
	t.Helper()
	typ, ok := m.TypeForOID(p.OID())
	if !ok || typ.Name != p.Name() {
		t.Errorf("%s: pgx says OID %d is %v", p, p.OID(), typ)
	}
	if p.ArrayOID() == 0 {
		return
	}
	arr, ok := m.TypeForOID(p.ArrayOID())
	if !ok || arr.Name != "_"+p.Name() {
		t.Errorf("%s: pgx says array OID %d is %v", p, p.ArrayOID(), arr)
		return
	}
	if ac, ok := arr.Codec.(*pgtype.ArrayCodec); !ok || ac.ElementType.OID != p.OID() {
		t.Errorf("%s: pgx's %s is not an array of it", p, arr.Name)
	}
}

// TestLogicalTypes: the LogicalType constants are the registry's logical
// types, each once.
func TestLogicalTypes(t *testing.T) {
	consts := []LogicalType{TypeText, TypeVarchar, TypeChar, TypeInt2, TypeInt4, TypeInt8, TypeNumeric,
		TypeFloat8, TypeBool, TypeDate, TypeTimestamp, TypeTimestamptz, TypeUUID, TypeJSONB, TypeBytea}
	for _, lt := range consts {
		if !lt.Valid() {
			t.Errorf("%q has no registry entry", lt)
		}
	}
	if n := len(LogicalTypeNames()); n != len(consts) {
		t.Errorf("%d logical types registered, %d constants", n, len(consts))
	}
	for _, lt := range []LogicalType{"", "real", "float4", "json", "name", "unknown", "TEXT", "money"} {
		if lt.Valid() || lt.OID() != 0 || lt.Size() != 0 || lt.IsText() {
			t.Errorf("%q: valid", lt)
		}
	}
}
