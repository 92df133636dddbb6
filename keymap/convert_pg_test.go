package keymap

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/testenv"
)

// TestCastTableMatchesPostgres checks castContextOf, between every pair
// of registered types, against PostgreSQL's pg_cast (plus its rule for
// I/O conversion casts to and from string types).
func TestCastTableMatchesPostgres(t *testing.T) {
	conn := connect(t)
	if conn == nil {
		return
	}
	rows := query(t, conn, "SELECT castsource, casttarget, castcontext FROM pg_catalog.pg_cast")
	pgCasts := map[[2]uint32]castContext{}
	for _, r := range rows {
		from, _ := strconv.ParseUint(string(r[0]), 10, 32)
		to, _ := strconv.ParseUint(string(r[1]), 10, 32)
		pgCasts[[2]uint32{uint32(from), uint32(to)}] = map[string]castContext{"i": ctxImplicit, "a": ctxAssignment, "e": ctxExplicit}[string(r[2])]
	}
	for from := range policy.NumPGTypes {
		for to := range policy.NumPGTypes {
			if from == to || from == policy.PGUnknown || from == policy.PGBytea || to == policy.PGBytea {
				continue
			}
			want, ok := pgCasts[[2]uint32{from.OID(), to.OID()}]
			switch {
			case ok:
			case to.Family() == policy.FamilyString:
				want = ctxAssignment
			case from.Family() == policy.FamilyString:
				want = ctxExplicit
			default:
				want = ctxNone
			}
			if got := castContextOf(from, to); got != want {
				t.Errorf("cast %s to %s: context %s, PostgreSQL %s", from.SQLName(), to.SQLName(), ctxName(got), ctxName(want))
			}
		}
	}
}

// TestRegistryMatchesPostgres checks every registered type's facts
// against pg_type, and that each of its names (typname, the config's,
// the aliases) is one PostgreSQL reads as the type.
func TestRegistryMatchesPostgres(t *testing.T) {
	conn := connect(t)
	if conn == nil {
		return
	}
	for p := range policy.NumPGTypes {
		r := query(t, conn, fmt.Sprintf("SELECT typname, typarray, typlen, pg_catalog.format_type(oid, NULL), typcategory FROM pg_catalog.pg_type WHERE oid = %d", p.OID()))
		if len(r) != 1 {
			t.Errorf("%s: no type with OID %d", p, p.OID())
			continue
		}
		got := fmt.Sprintf("%s %s %s %s %s", r[0][0], r[0][1], r[0][2], r[0][3], familyOf(string(r[0][4]), p))
		want := fmt.Sprintf("%s %d %d %s %s", p.Name(), p.ArrayOID(), p.Size(), p.SQLName(), familyOf("", p))
		if got != want {
			t.Errorf("%s: pg_type says %q, the registry %q", p, got, want)
		}
		names := []string{p.Name(), p.SQLName()}
		if lt := p.Logical(); lt != "" {
			names = append(names, string(lt))
		}
		for _, n := range names {
			r := query(t, conn, fmt.Sprintf("SELECT %s::pg_catalog.regtype::oid", quoteLiteral(n)))
			if len(r) != 1 || string(r[0][0]) != strconv.FormatUint(uint64(p.OID()), 10) {
				t.Errorf("%s: PostgreSQL reads %q as type %q", p, n, r)
			}
		}
	}
}

// familyOf maps a typcategory to a family, or (category "") gives p's
// registered family the same way: unknown (category X) reads as text.
func familyOf(category string, p policy.PGType) string {
	if category == "" {
		return fmt.Sprint(p.Family())
	}
	f := map[string]policy.Family{"S": policy.FamilyString, "N": policy.FamilyNumeric, "D": policy.FamilyDateTime}[category]
	if p == policy.PGUnknown && category == "X" {
		f = policy.FamilyString
	}
	if f == 0 {
		f = policy.FamilyOther
	}
	return fmt.Sprint(f)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func connect(t *testing.T) *pgconn.PgConn {
	pg := testenv.Postgres(t)
	if pg == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func query(t *testing.T, conn *pgconn.PgConn, sql string) [][][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Rows
}

func ctxName(c castContext) string {
	if int(c) < 4 {
		return [...]string{"implicit", "assignment", "explicit", "none"}[c]
	}
	return fmt.Sprint(int(c))
}
