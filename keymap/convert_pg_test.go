package keymap

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/testenv"
)

// TestCastTableMatchesPostgres checks castContextOf, between every pair
// of the types a value may arrive as, against PostgreSQL's pg_cast (plus
// its rule for I/O conversion casts to and from string types).
func TestCastTableMatchesPostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	if pg == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Exec(ctx, "SELECT castsource, casttarget, castcontext FROM pg_catalog.pg_cast").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	pgCasts := map[[2]uint32]castContext{}
	for _, r := range rows[0].Rows {
		from, _ := strconv.ParseUint(string(r[0]), 10, 32)
		to, _ := strconv.ParseUint(string(r[1]), 10, 32)
		pgCasts[[2]uint32{uint32(from), uint32(to)}] = map[string]castContext{"i": ctxImplicit, "a": ctxAssignment, "e": ctxExplicit}[string(r[2])]
	}
	for _, from := range pgTypes {
		for _, to := range pgTypes {
			if from == to || from.oid == oidUnknown || from.oid == oidBytea || to.oid == oidBytea {
				continue
			}
			want, ok := pgCasts[[2]uint32{from.oid, to.oid}]
			switch {
			case ok:
			case to.cat == catString:
				want = ctxAssignment
			case from.cat == catString:
				want = ctxExplicit
			default:
				want = ctxNone
			}
			if got := castContextOf(from, to); got != want {
				t.Errorf("cast %s to %s: context %s, PostgreSQL %s", from.name, to.name, ctxName(got), ctxName(want))
			}
		}
	}
}

func ctxName(c castContext) string {
	if int(c) < 4 {
		return [...]string{"implicit", "assignment", "explicit", "none"}[c]
	}
	return fmt.Sprint(int(c))
}
