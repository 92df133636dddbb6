package policy

import (
	"fmt"
	"sort"
	"strings"
)

// LogicalType is the type an application sees for an encrypted column, by
// the name the config gives it; in PostgreSQL the column itself is bytea.
// Its facts are those of its entry in the type registry (PGType).
type LogicalType string

// The logical types an encrypted column may have.
const (
	TypeText        LogicalType = "text"
	TypeVarchar     LogicalType = "varchar"
	TypeChar        LogicalType = "char"
	TypeInt2        LogicalType = "int2"
	TypeInt4        LogicalType = "int4"
	TypeInt8        LogicalType = "int8"
	TypeNumeric     LogicalType = "numeric"
	TypeFloat8      LogicalType = "float8"
	TypeBool        LogicalType = "bool"
	TypeDate        LogicalType = "date"
	TypeTimestamp   LogicalType = "timestamp"
	TypeTimestamptz LogicalType = "timestamptz"
	TypeUUID        LogicalType = "uuid"
	TypeJSONB       LogicalType = "jsonb"
	TypeBytea       LogicalType = "bytea"
)

// PGType is a PostgreSQL type pgcloak knows: one an encrypted column may
// have (it has a LogicalType), or one a client value may only arrive as or
// be cast to. It indexes the type registry, so other packages can keep a
// per-type table as an array of length NumPGTypes that the compiler checks
// (keymap's codecs are one).
type PGType uint8

// The registered types. A new one goes before NumPGTypes.
const (
	PGText PGType = iota
	PGVarchar
	PGBPChar
	PGInt2
	PGInt4
	PGInt8
	PGNumeric
	PGFloat8
	PGBool
	PGDate
	PGTimestamp
	PGTimestamptz
	PGUUID
	PGJSONB
	PGBytea
	// Values may arrive as these, or be cast to them; no encrypted column
	// has them.
	PGName
	PGJSON
	PGFloat4
	PGUnknown

	// NumPGTypes is the number of registered types.
	NumPGTypes
)

// Family groups types the way PostgreSQL's typcategory does, as far as
// conversions need it: string types convert to and from anything through
// text, numbers and date/times among themselves.
type Family uint8

// The type families; the zero value is no family (an incomplete entry).
const (
	FamilyString Family = iota + 1
	FamilyNumeric
	FamilyDateTime
	FamilyOther
)

// typeInfo is what pgcloak knows of one PostgreSQL type.
type typeInfo struct {
	// logical is the config's name for the type, "" when no encrypted
	// column may have it.
	logical LogicalType
	// name is pg_type.typname: how a cast names the type once
	// PostgreSQL's parser has read it, and DDL without modifiers.
	name string
	// sqlName is format_type's name, the one PostgreSQL's messages use.
	sqlName string
	// aliases are the other names the config (and PostgreSQL's grammar)
	// accept for the type.
	aliases  []string
	oid      uint32 // pg_type.oid, shown to clients for the logical type
	arrayOID uint32 // pg_type.typarray, 0 when the type has none
	size     int16  // pg_type.typlen: the fixed byte size, or -1 (varlena), -2 (C string)
	family   Family
}

// registry is one entry per type; its length is checked against
// NumPGTypes, and TestRegistry checks every entry is complete.
var registry = [...]typeInfo{
	PGText:        {logical: TypeText, name: "text", sqlName: "text", oid: 25, arrayOID: 1009, size: -1, family: FamilyString},
	PGVarchar:     {logical: TypeVarchar, name: "varchar", sqlName: "character varying", aliases: []string{"character varying"}, oid: 1043, arrayOID: 1015, size: -1, family: FamilyString},
	PGBPChar:      {logical: TypeChar, name: "bpchar", sqlName: "character", aliases: []string{"character"}, oid: 1042, arrayOID: 1014, size: -1, family: FamilyString},
	PGInt2:        {logical: TypeInt2, name: "int2", sqlName: "smallint", aliases: []string{"smallint"}, oid: 21, arrayOID: 1005, size: 2, family: FamilyNumeric},
	PGInt4:        {logical: TypeInt4, name: "int4", sqlName: "integer", aliases: []string{"integer", "int"}, oid: 23, arrayOID: 1007, size: 4, family: FamilyNumeric},
	PGInt8:        {logical: TypeInt8, name: "int8", sqlName: "bigint", aliases: []string{"bigint"}, oid: 20, arrayOID: 1016, size: 8, family: FamilyNumeric},
	PGNumeric:     {logical: TypeNumeric, name: "numeric", sqlName: "numeric", aliases: []string{"decimal"}, oid: 1700, arrayOID: 1231, size: -1, family: FamilyNumeric},
	PGFloat8:      {logical: TypeFloat8, name: "float8", sqlName: "double precision", aliases: []string{"double precision"}, oid: 701, arrayOID: 1022, size: 8, family: FamilyNumeric},
	PGBool:        {logical: TypeBool, name: "bool", sqlName: "boolean", aliases: []string{"boolean"}, oid: 16, arrayOID: 1000, size: 1, family: FamilyOther},
	PGDate:        {logical: TypeDate, name: "date", sqlName: "date", oid: 1082, arrayOID: 1182, size: 4, family: FamilyDateTime},
	PGTimestamp:   {logical: TypeTimestamp, name: "timestamp", sqlName: "timestamp without time zone", aliases: []string{"timestamp without time zone"}, oid: 1114, arrayOID: 1115, size: 8, family: FamilyDateTime},
	PGTimestamptz: {logical: TypeTimestamptz, name: "timestamptz", sqlName: "timestamp with time zone", aliases: []string{"timestamp with time zone"}, oid: 1184, arrayOID: 1185, size: 8, family: FamilyDateTime},
	PGUUID:        {logical: TypeUUID, name: "uuid", sqlName: "uuid", oid: 2950, arrayOID: 2951, size: 16, family: FamilyOther},
	PGJSONB:       {logical: TypeJSONB, name: "jsonb", sqlName: "jsonb", oid: 3802, arrayOID: 3807, size: -1, family: FamilyOther},
	PGBytea:       {logical: TypeBytea, name: "bytea", sqlName: "bytea", oid: 17, arrayOID: 1001, size: -1, family: FamilyOther},
	PGName:        {name: "name", sqlName: "name", oid: 19, arrayOID: 1003, size: 64, family: FamilyString},
	PGJSON:        {name: "json", sqlName: "json", oid: 114, arrayOID: 199, size: -1, family: FamilyOther},
	PGFloat4:      {name: "float4", sqlName: "real", aliases: []string{"real"}, oid: 700, arrayOID: 1021, size: 4, family: FamilyNumeric},
	// unknown is an untyped literal's type: read as text, so a string.
	PGUnknown: {name: "unknown", sqlName: "unknown", oid: 705, size: -2, family: FamilyString},
}

// The compiler refuses this when a type is added at the end of the enum
// without its entry (one left out in the middle is TestRegistry's).
var _ [NumPGTypes]typeInfo = registry

// Indexes of the registry, built once.
var (
	byOID      = map[uint32]PGType{}
	byArrayOID = map[uint32]PGType{}
	byName     = map[string]PGType{} // typnames, logical names and aliases
	byLogical  = map[LogicalType]PGType{}
)

func init() {
	for t := range NumPGTypes {
		e := &registry[t]
		byOID[e.oid] = t
		if e.arrayOID != 0 {
			byArrayOID[e.arrayOID] = t
		}
		byName[e.name] = t
		for _, a := range e.aliases {
			byName[a] = t
		}
		if e.logical != "" {
			byName[string(e.logical)] = t
			byLogical[e.logical] = t
		}
	}
}

// LookupPGType is the registered type with OID oid.
func LookupPGType(oid uint32) (PGType, bool) {
	t, ok := byOID[oid]
	return t, ok
}

// LookupArrayType is the registered type whose array type has OID oid.
func LookupArrayType(oid uint32) (PGType, bool) {
	t, ok := byArrayOID[oid]
	return t, ok
}

// LookupTypname is the registered type whose pg_type.typname is name
// exactly, as a TypeName carries it once PostgreSQL's parser has read it.
func LookupTypname(name string) (PGType, bool) {
	t, ok := byName[name]
	if !ok || registry[t].name != name {
		return 0, false
	}
	return t, true
}

func (t PGType) String() string {
	if t >= NumPGTypes {
		return fmt.Sprintf("PGType(%d)", uint8(t))
	}
	return registry[t].name
}

// Logical is the config's name for t, "" when no encrypted column may
// have it.
func (t PGType) Logical() LogicalType { return registry[t].logical }

// Name is t's pg_type.typname (bpchar, int4).
func (t PGType) Name() string { return registry[t].name }

// SQLName is t's name in PostgreSQL's messages ("character varying").
func (t PGType) SQLName() string { return registry[t].sqlName }

// OID is t's PostgreSQL type OID.
func (t PGType) OID() uint32 { return registry[t].oid }

// ArrayOID is the OID of t's array type, 0 when it has none.
func (t PGType) ArrayOID() uint32 { return registry[t].arrayOID }

// Size is t's pg_type.typlen: its fixed byte size, or -1 (or -2) when its
// length varies.
func (t PGType) Size() int16 { return registry[t].size }

// Family is t's family.
func (t PGType) Family() Family { return registry[t].family }

// PGType is t's registry entry; ok is false when t is not a supported
// logical type.
func (t LogicalType) PGType() (PGType, bool) {
	p, ok := byLogical[t]
	return p, ok
}

// Valid reports whether t is a supported logical type.
func (t LogicalType) Valid() bool {
	_, ok := byLogical[t]
	return ok
}

// OID is the PostgreSQL type OID clients are shown for t, 0 if t is not
// valid.
func (t LogicalType) OID() uint32 {
	if p, ok := byLogical[t]; ok {
		return p.OID()
	}
	return 0
}

// Size is the fixed byte size of t, or -1; 0 if t is not valid.
func (t LogicalType) Size() int16 {
	if p, ok := byLogical[t]; ok {
		return p.Size()
	}
	return 0
}

// IsDateTime reports the date and time types, whose input errors have
// their own SQLSTATEs in PostgreSQL.
func (t LogicalType) IsDateTime() bool { return t.family() == FamilyDateTime }

// IsText reports whether t is one of the character types.
func (t LogicalType) IsText() bool { return t.family() == FamilyString }

func (t LogicalType) family() Family {
	if p, ok := byLogical[t]; ok {
		return p.Family()
	}
	return 0
}

// ParseLogicalType maps a type name as written in SQL or the config (any
// case, PostgreSQL's typname and aliases accepted) to a logical type.
func ParseLogicalType(name string) (LogicalType, bool) {
	t, ok := byName[strings.ToLower(strings.TrimSpace(name))]
	if !ok || registry[t].logical == "" {
		return "", false
	}
	return registry[t].logical, true
}

// LogicalTypeNames lists the supported type names, for error messages.
func LogicalTypeNames() []string {
	names := make([]string, 0, len(byLogical))
	for t := range byLogical {
		names = append(names, string(t))
	}
	sort.Strings(names)
	return names
}
