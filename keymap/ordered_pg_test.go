package keymap

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/policy"
)

// TestOrderedCiphertextsSortInPostgres has PostgreSQL sort a few thousand
// edge and random values of each ordered type, sent as text literals, next
// to their stored ciphertexts in a bytea column, and checks that
//
//   - PostgreSQL reads each literal as the codec does;
//   - ORDER BY the bytea column is bytes.Compare order, and is the
//     plaintext column's order: along it the plaintexts never decrease,
//     values PostgreSQL calls equal share their term, and different ones
//     differ;
//   - for a btree-indexed bytea column, the OrderRanges of constants
//     select exactly the rows the plaintext comparison selects.
func TestOrderedCiphertextsSortInPostgres(t *testing.T) {
	conn := connect(t)
	if conn == nil {
		return
	}
	query(t, conn, "SET TimeZone = 'UTC'")
	query(t, conn, "SET DateStyle = 'ISO, MDY'")
	query(t, conn, "SET extra_float_digits = 1")
	rng := rand.New(rand.NewPCG(13, 14))
	h, _ := orderedKeysets(t)
	for _, typ := range policy.OrderedTypes {
		t.Run(string(typ), func(t *testing.T) {
			c := newCipher(t, h, orderedRule("k", typ))
			lits := orderedSamples(t, rng, typ, 2500)
			// Repeats, so that equal values meet in the sort.
			for range 100 {
				lits = append(lits, lits[rng.IntN(len(lits))])
			}
			pts := make([][]byte, len(lits))
			cts := make([][]byte, len(lits))
			for i, lit := range lits {
				pts[i] = canonicalOf(t, typ, lit)
				ct, err := c.Encrypt(pts[i])
				if err != nil {
					t.Fatal(err)
				}
				cts[i] = ct
			}
			table := "ord_" + string(typ)
			collate := ""
			if typ == policy.TypeText {
				collate = ` COLLATE "C"`
			}
			query(t, conn, fmt.Sprintf("CREATE TEMP TABLE %s (i int, v %s%s, c bytea)", table, typ, collate))
			insertOrdered(t, conn, table, typ, lits, cts)

			for _, r := range query(t, conn, "SELECT i, v::text FROM "+table) {
				// The same value. Numeric's display scale may differ: the
				// codec reads -9110e-20 with scale 19, PostgreSQL with 20.
				// The order ignores it.
				i := atoi(t, r[0])
				if pgCompare(t, typ, canonicalOf(t, typ, string(r[1])), pts[i]) != 0 {
					t.Fatalf("PostgreSQL reads %q as %s, the codec as %s", lits[i], r[1], textOf(t, typ, pts[i]))
				}
			}
			rank := make([]int, len(lits))
			for _, r := range query(t, conn, "SELECT i, dense_rank() OVER (ORDER BY v) FROM "+table) {
				rank[atoi(t, r[0])] = atoi(t, r[1])
			}
			var byC []int
			for _, r := range query(t, conn, "SELECT i FROM "+table+" ORDER BY c, i") {
				byC = append(byC, atoi(t, r[0]))
			}
			goOrder := make([]int, len(lits))
			for i := range goOrder {
				goOrder[i] = i
			}
			slices.SortStableFunc(goOrder, func(a, b int) int { return bytes.Compare(cts[a], cts[b]) })
			if !slices.Equal(byC, goOrder) {
				t.Fatal("PostgreSQL's bytea order is not bytes.Compare order")
			}
			for k := 1; k < len(byC); k++ {
				a, b := byC[k-1], byC[k]
				sameTerm := bytes.Equal(termOf(t, typ, cts[a]), termOf(t, typ, cts[b]))
				switch {
				case rank[a] > rank[b]:
					t.Fatalf("ORDER BY c puts %s before %s", textOf(t, typ, pts[a]), textOf(t, typ, pts[b]))
				case rank[a] == rank[b] && !sameTerm:
					t.Fatalf("%s and %s are equal in PostgreSQL; their terms differ", textOf(t, typ, pts[a]), textOf(t, typ, pts[b]))
				case rank[a] < rank[b] && sameTerm:
					t.Fatalf("%s and %s differ in PostgreSQL; their terms are equal", textOf(t, typ, pts[a]), textOf(t, typ, pts[b]))
				case bytes.Equal(cts[a], cts[b]) != bytes.Equal(pts[a], pts[b]):
					t.Fatalf("%x and %x: stored values equal: %v", pts[a], pts[b], bytes.Equal(cts[a], cts[b]))
				}
			}

			// A btree entry holds at most 2704 bytes (a third of a page),
			// and terms do not compress: text longer than 79 bytes cannot
			// be indexed. Those rows go before the index is built.
			query(t, conn, fmt.Sprintf("DELETE FROM %s WHERE length(c) > %d", table, btreeMaxItem))
			query(t, conn, fmt.Sprintf("CREATE INDEX ON %s (c)", table))
			query(t, conn, "ANALYZE "+table)
			query(t, conn, "SET enable_seqscan = off")
			defer query(t, conn, "RESET enable_seqscan")
			ops := []string{"<", "<=", ">", ">=", "="}
			for range 6 {
				k := rng.IntN(len(lits))
				for op := OrderLess; op <= OrderEqual; op++ {
					ranges, err := c.OrderRanges(pts[k], op)
					if err != nil {
						t.Fatal(err)
					}
					var conds []string
					for _, r := range ranges {
						conds = append(conds, fmt.Sprintf("(c >= %s AND c < %s)", byteaLiteral(r.Lo), byteaLiteral(r.Hi)))
					}
					plain := fmt.Sprintf("SELECT count(*) FROM %s WHERE v %s %s::%s%s", table, ops[op], quoteLiteral(lits[k]), typ, collate)
					enc := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s", table, strings.Join(conds, " OR "))
					want, got := query(t, conn, plain)[0][0], query(t, conn, enc)[0][0]
					if !bytes.Equal(got, want) {
						t.Fatalf("x %s %s: %s rows by ciphertext range, %s by plaintext", ops[op], textOf(t, typ, pts[k]), got, want)
					}
				}
			}
			plan := query(t, conn, fmt.Sprintf("EXPLAIN SELECT count(*) FROM %s WHERE c >= %s AND c < %s", table, byteaLiteral(cts[0]), byteaLiteral(cts[1])))
			if !strings.Contains(fmt.Sprintf("%s", plan), "Index") {
				t.Errorf("a ciphertext range does not use the btree index: %s", plan)
			}
		})
	}
}

// insertOrdered inserts (i, literal, ciphertext) rows in batches.
func insertOrdered(t *testing.T, conn *pgconn.PgConn, table string, typ policy.LogicalType, lits []string, cts [][]byte) {
	t.Helper()
	const batch = 200
	for start := 0; start < len(lits); start += batch {
		var sb strings.Builder
		fmt.Fprintf(&sb, "INSERT INTO %s (i, v, c) VALUES ", table)
		for i := start; i < min(start+batch, len(lits)); i++ {
			if i > start {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, "(%d, %s::%s, %s)", i, quoteLiteral(lits[i]), typ, byteaLiteral(cts[i]))
		}
		query(t, conn, sb.String())
	}
}

// btreeMaxItem is the longest bytea a btree index entry holds with 8 kB
// pages: BTMaxItemSize (2704) less the index tuple header (8 bytes) and
// the bytea's own (4). Stored ordered text is 58 + 33n bytes for n bytes of
// text, so up to 79 bytes of text fit.
const btreeMaxItem = 2704 - 8 - 4

func byteaLiteral(b []byte) string { return `'\x` + hex.EncodeToString(b) + `'::bytea` }

func atoi(t *testing.T, b []byte) int {
	t.Helper()
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
