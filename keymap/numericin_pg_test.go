package keymap

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

// TestNumericTextMatchesNumericIn reads numeric literals as numeric_in
// does, display scale included: an exponent moves the scale
// (9110e-20 shows 20 decimals, 100e-2 shows 1.00), which the canonical
// form keeps. Each literal is read by PostgreSQL and by the codec, and the
// text forms compared.
func TestNumericTextMatchesNumericIn(t *testing.T) {
	conn := connect(t)
	if conn == nil {
		return
	}
	literals := []string{"-9110e-20", "9110e-20", "100e-2", "1e-20", "12e-3", "1.5e-1", "0.9110e-16", "1.50", "0e-5",
		"0.000e3", "1e3", "1.2300e2", "5e0", "-0.0e-2", "123.456e-1", "7E+2"}
	rng := rand.New(rand.NewPCG(7, 3))
	for range 300 {
		literals = append(literals, fmt.Sprintf("%d.%0*de%d", rng.IntN(100000), rng.IntN(4)+1, rng.IntN(1000), rng.IntN(41)-20))
	}
	codec := CodecFor(policy.TypeNumeric)
	for _, lit := range literals {
		want := query(t, conn, "SELECT "+quoteLiteral(lit)+"::numeric::text")[0][0]
		canon, err := codec.Canonical(TextFormat, []byte(lit), &TextContext{ServerMajor: 15})
		if err != nil {
			t.Errorf("%s: %v; numeric_in reads %s", lit, err, want)
			continue
		}
		got, err := codec.AppendText(nil, canon, &TextContext{})
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: %q, %v; numeric_in then numeric_out give %q", lit, got, err, want)
		}
	}
}
