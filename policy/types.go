package policy

import (
	"sort"
	"strings"
)

// LogicalType is the type an application sees for an encrypted column; in
// PostgreSQL the column itself is bytea.
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

// typeInfo is what the wire protocol needs to present a logical type: its
// PostgreSQL type OID and its fixed size (-1 for variable length).
type typeInfo struct {
	oid  uint32
	size int16
}

var logicalTypes = map[LogicalType]typeInfo{
	TypeText:        {25, -1},
	TypeVarchar:     {1043, -1},
	TypeChar:        {1042, -1},
	TypeInt2:        {21, 2},
	TypeInt4:        {23, 4},
	TypeInt8:        {20, 8},
	TypeNumeric:     {1700, -1},
	TypeFloat8:      {701, 8},
	TypeBool:        {16, 1},
	TypeDate:        {1082, 4},
	TypeTimestamp:   {1114, 8},
	TypeTimestamptz: {1184, 8},
	TypeUUID:        {2950, 16},
	TypeJSONB:       {3802, -1},
	TypeBytea:       {17, -1},
}

// typeAliases are the other names PostgreSQL itself accepts for a type.
var typeAliases = map[string]LogicalType{
	"character varying":           TypeVarchar,
	"character":                   TypeChar,
	"bpchar":                      TypeChar,
	"smallint":                    TypeInt2,
	"integer":                     TypeInt4,
	"int":                         TypeInt4,
	"bigint":                      TypeInt8,
	"decimal":                     TypeNumeric,
	"double precision":            TypeFloat8,
	"boolean":                     TypeBool,
	"timestamp without time zone": TypeTimestamp,
	"timestamp with time zone":    TypeTimestamptz,
}

// Valid reports whether t is a supported logical type.
func (t LogicalType) Valid() bool {
	_, ok := logicalTypes[t]
	return ok
}

// OID is the PostgreSQL type OID clients are shown for t.
func (t LogicalType) OID() uint32 { return logicalTypes[t].oid }

// Size is the fixed byte size of t, or -1.
func (t LogicalType) Size() int16 { return logicalTypes[t].size }

// IsDateTime reports the date and time types, whose input errors have
// their own SQLSTATEs in PostgreSQL.
func (t LogicalType) IsDateTime() bool {
	return t == TypeDate || t == TypeTimestamp || t == TypeTimestamptz
}

// IsText reports whether t is one of the character types.
func (t LogicalType) IsText() bool {
	return t == TypeText || t == TypeVarchar || t == TypeChar
}

// ParseLogicalType maps a type name as written in SQL or the config (any
// case, PostgreSQL's aliases accepted) to a logical type.
func ParseLogicalType(name string) (LogicalType, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	if t := LogicalType(n); t.Valid() {
		return t, true
	}
	t, ok := typeAliases[n]
	return t, ok
}

// LogicalTypeNames lists the supported type names, for error messages.
func LogicalTypeNames() []string {
	names := make([]string, 0, len(logicalTypes))
	for t := range logicalTypes {
		names = append(names, string(t))
	}
	sort.Strings(names)
	return names
}
