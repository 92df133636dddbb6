package proxy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/scramauth"
)

const fileVerifier = "SCRAM-SHA-256$4096:it0oB8/E0UztM9i9jFdLvw==$YwcI3o/kRtTQ6Un6yWmkyeb5WEQLLbU4N2ijIlWS/2I=:pCEM+niDvMRJubwLQ9Ea5sy/9YxHSu7uVyrfMwnFuz8="

func TestAuthFileLinesAsPgBouncerWritesThem(t *testing.T) {
	for _, tc := range []struct {
		line, name, secret string
		bad                bool
	}{
		{line: `"alice" "SCRAM-SHA-256$x"`, name: "alice", secret: "SCRAM-SHA-256$x"},
		{line: `"a ""quoted"" role"   "md5abc" trailing`, name: `a "quoted" role`, secret: "md5abc"},
		{line: "\t\"tab\"\t\"s\"", name: "tab", secret: "s"},
		{line: `"é" ""`, name: "é", secret: ""},
		{line: `alice "x"`, bad: true},
		{line: `"alice" x`, bad: true},
		{line: `"alice`, bad: true},
		{line: `"alice" "x`, bad: true},
	} {
		name, secret, err := parseAuthFileLine(tc.line)
		if tc.bad != (err != nil) || !tc.bad && (name != tc.name || secret != tc.secret) {
			t.Errorf("%q: %q %q %v", tc.line, name, secret, err)
		}
	}
}

func TestVerifierFileLookups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "verifiers")
	write := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("; a comment\n# another\n\n\"alice\" \"" + fileVerifier + "\"\n\"md5role\" \"md5a3556571e93b0d20722ba62be61e8c2d\"\n")
	f := verifierFile(path)
	ctx := context.Background()
	if v, err := f.Verifier(ctx, "alice", "db"); err != nil || v == nil || v.String() != fileVerifier {
		t.Fatalf("alice: %v, %v", v, err)
	}
	for _, role := range []string{"md5role", "bob", "Alice"} {
		if v, err := f.Verifier(ctx, role, "db"); err != nil || v != nil {
			t.Errorf("%s: %v, %v; want no verifier", role, v, err)
		}
	}
	write("\"alice\" \"" + fileVerifier + "\"\n\"bob\" \"SCRAM-SHA-256$4096:c2FsdA==$c2VjcmV0\"\n")
	if _, err := f.Verifier(ctx, "bob", "db"); err == nil || !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("a malformed verifier: %v (want its line, not its text)", err)
	}
	write("alice " + fileVerifier + "\n")
	if _, err := f.Verifier(ctx, "alice", "db"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("an unquoted line: %v", err)
	}
	if _, err := verifierFile(filepath.Join(t.TempDir(), "missing")).Verifier(ctx, "alice", "db"); err == nil {
		t.Error("a missing file gave no error")
	}
}

// countingSource counts lookups.
type countingSource struct{ n int }

func (c *countingSource) Verifier(context.Context, string, string) (*scramauth.Verifier, error) {
	c.n++
	return scramauth.ParseVerifier(fileVerifier)
}

func TestVerifierCacheKeepsLookupsForItsTTL(t *testing.T) {
	src := &countingSource{}
	c := &cachedVerifiers{src: src, ttl: time.Hour, entries: map[string]cachedVerifier{}}
	ctx := context.Background()
	for range 3 {
		if v, err := c.Verifier(ctx, "alice", "db"); err != nil || v == nil {
			t.Fatal(v, err)
		}
	}
	if src.n != 1 {
		t.Fatalf("%d lookups for three logins within the TTL", src.n)
	}
	c.Verifier(ctx, "alice", "other db")
	c.Verifier(ctx, `alice"@db`, "")
	if src.n != 3 {
		t.Fatalf("%d lookups: another database or a role spelt like a key must not hit alice@db", src.n)
	}
	c.forget("alice", "db")
	c.Verifier(ctx, "alice", "db")
	if src.n != 4 {
		t.Fatalf("%d lookups after forget", src.n)
	}
	c.ttl = 0
	c.forget("alice", "db")
	c.Verifier(ctx, "alice", "db")
	c.Verifier(ctx, "alice", "db")
	if src.n != 6 {
		t.Fatalf("%d lookups with a zero TTL", src.n)
	}
}
