package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
		if tc.bad {
			continue
		}
		if n2, s2, err := parseAuthFileLine(AuthFileLine(name, secret)); err != nil || n2 != name || s2 != secret {
			t.Errorf("AuthFileLine(%q, %q) = %s reads back as %q %q %v", name, secret, AuthFileLine(name, secret), n2, s2, err)
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
	if v, err := f.Verifier(ctx, "alice"); err != nil || v == nil || v.String() != fileVerifier {
		t.Fatalf("alice: %v, %v", v, err)
	}
	for _, role := range []string{"md5role", "bob", "Alice"} {
		if v, err := f.Verifier(ctx, role); err != nil || v != nil {
			t.Errorf("%s: %v, %v; want no verifier", role, v, err)
		}
	}
	write("\"alice\" \"" + fileVerifier + "\"\n\"bob\" \"SCRAM-SHA-256$4096:c2FsdA==$c2VjcmV0\"\n")
	if _, err := f.Verifier(ctx, "bob"); err == nil || !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("a malformed verifier: %v (want its line, not its text)", err)
	}
	write("alice " + fileVerifier + "\n")
	if _, err := f.Verifier(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("an unquoted line: %v", err)
	}
	if _, err := verifierFile(filepath.Join(t.TempDir(), "missing")).Verifier(ctx, "alice"); err == nil {
		t.Error("a missing file gave no error")
	}
}

// countingSource counts lookups; block, when set, holds each lookup.
type countingSource struct {
	n     atomic.Int32
	block chan struct{}
}

func (c *countingSource) Verifier(context.Context, string) (*scramauth.Verifier, error) {
	c.n.Add(1)
	if c.block != nil {
		<-c.block
	}
	return scramauth.ParseVerifier(fileVerifier)
}

func newCache(src VerifierSource, ttl time.Duration) *cachedVerifiers {
	return &cachedVerifiers{src: src, ttl: ttl, entries: map[string]cachedVerifier{}, slot: make(chan struct{}, 1)}
}

func TestVerifierCacheKeepsLookupsWhilePostgreSQLAsksAlike(t *testing.T) {
	src := &countingSource{}
	c := newCache(src, time.Hour)
	ctx := context.Background()
	for range 3 {
		if v, err := c.Verifier(ctx, "alice", "4096:salt1"); err != nil || v == nil {
			t.Fatal(v, err)
		}
	}
	if src.n.Load() != 1 {
		t.Fatalf("%d lookups for three logins within the TTL", src.n.Load())
	}
	// PostgreSQL asks with other key factors: the password changed, or
	// the role was created since (its mock factors gave way).
	c.Verifier(ctx, "alice", "4096:salt2")
	c.Verifier(ctx, "alice", "4096:salt2")
	if src.n.Load() != 2 {
		t.Fatalf("%d lookups after PostgreSQL changed its salt", src.n.Load())
	}
	// A name that is not UTF-8 names no role: no lookup.
	if v, err := c.Verifier(ctx, "bad\xff", "x"); v != nil || err != nil || src.n.Load() != 2 {
		t.Fatalf("invalid UTF-8: %v, %v, %d lookups", v, err, src.n.Load())
	}
	c.ttl = 0
	c.Verifier(ctx, "bob", "f")
	c.Verifier(ctx, "bob", "f")
	if src.n.Load() != 4 {
		t.Fatalf("%d lookups with a zero TTL", src.n.Load())
	}
	// PostgreSQL cuts a startup packet's role name to 63 bytes.
	long := strings.Repeat("r", 70)
	if roleName(long) != long[:63] || roleName("alice") != "alice" {
		t.Fatalf("roleName(%d bytes) = %d bytes", len(long), len(roleName(long)))
	}
}

func TestVerifierCacheFullDropsRolesWithoutVerifiersFirst(t *testing.T) {
	c := newCache(&countingSource{}, time.Hour)
	v, _ := scramauth.ParseVerifier(fileVerifier)
	c.store("known", cachedVerifier{v: v, asked: "k", expires: time.Now().Add(time.Hour)})
	for i := 0; len(c.entries) < maxCachedVerifiers; i++ {
		c.store(fmt.Sprint("unknown", i), cachedVerifier{asked: "m", expires: time.Now().Add(time.Hour)})
	}
	c.store("one more", cachedVerifier{asked: "m", expires: time.Now().Add(time.Hour)})
	if got, ok := c.cached("known", "k"); !ok || got != v || len(c.entries) != 2 {
		t.Fatalf("after the cache filled with unknown names: known cached %v, %d entries", ok, len(c.entries))
	}
}

func TestVerifierLookupsWaitBoundedAndFailFast(t *testing.T) {
	src := &countingSource{block: make(chan struct{})}
	c := newCache(src, time.Hour)
	first := make(chan error, 1)
	go func() {
		_, err := c.Verifier(context.Background(), "slow", "f")
		first <- err
	}()
	for src.n.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// A login waiting behind it gives up with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Verifier(ctx, "other", "f"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting login: %v, want its deadline", err)
	}
	// Past maxPendingLookups waiting, a login is refused at once.
	c.pending.Add(maxPendingLookups)
	if _, err := c.Verifier(context.Background(), "third", "f"); !errors.Is(err, errTooManyLookups) {
		t.Fatalf("%v, want errTooManyLookups", err)
	}
	c.pending.Add(-maxPendingLookups)
	close(src.block)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Logins that waited for the same role find it cached.
	if _, err := c.Verifier(context.Background(), "slow", "f"); err != nil || src.n.Load() != 1 {
		t.Fatalf("%v, %d lookups", err, src.n.Load())
	}
}
