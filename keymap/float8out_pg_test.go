package keymap

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/policy"
)

// TestFloat8TextMatchesFloat8out prints floats as PostgreSQL's float8out
// does, above all the large ones whose shortest round-tripping decimal is
// exactly halfway to a neighbour (1.895176527792331e+16 reads back as
// 18951765277923312 only by round-half-even): PostgreSQL's Ryu does not
// take such a decimal and prints 1.8951765277923312e+16. Each float goes
// to PostgreSQL in binary; the text comes back from float8out.
func TestFloat8TextMatchesFloat8out(t *testing.T) {
	conn := connect(t)
	if conn == nil {
		return
	}
	rng := rand.New(rand.NewPCG(5, 12))
	floats := []float64{18951765277923312, 5.6419990598679036e+19, 2.0556489049835552e+16, 2.6590539746703677e+18,
		1 << 51, 1 << 53, 1<<53 + 2, 1e15, 1e16, 1e17, 123456789012345678, math.MaxFloat64, -math.MaxFloat64,
		5e-324, 0.1, 0.30000000000000004, -2.5, 1e-5, 0, math.Copysign(0, -1)}
	for range 2000 {
		// Integers from 2^51 up, whose halfway points are short
		// decimals, and random doubles anywhere.
		k := float64(rng.Uint64()>>11) * math.Ldexp(1, rng.IntN(80))
		floats = append(floats, k, -k, math.Float64frombits(rng.Uint64()))
	}
	codec := CodecFor(policy.TypeFloat8)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	boundary := 0
	for _, f := range floats {
		if math.IsNaN(f) {
			continue
		}
		bits := binary.BigEndian.AppendUint64(nil, math.Float64bits(f))
		res := conn.ExecParams(ctx, "SELECT $1::float8::text", [][]byte{bits}, []uint32{701}, []int16{1}, []int16{0}).Read()
		if res.Err != nil {
			t.Fatalf("%v: %v", f, res.Err)
		}
		want := string(res.Rows[0][0])
		got, err := codec.AppendText(nil, bits, &TextContext{})
		if err != nil || string(got) != want {
			t.Errorf("%b: %q, %v; float8out %q", math.Float64bits(f), got, err, want)
		}
		if math.Abs(f) >= 1<<51 && !math.IsInf(f, 0) && onRoundingBoundary(shortest(f), f) {
			boundary++
		}
	}
	if boundary == 0 {
		t.Error("no float whose shortest decimal lies on a rounding boundary was tried")
	}
	t.Logf("%d floats, %d with their shortest decimal on a rounding boundary", len(floats), boundary)
}

func shortest(f float64) []byte { return strconv.AppendFloat(nil, f, 'e', -1, 64) }
