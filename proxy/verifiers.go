package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcloak/pgcloak/dbguard"
	"github.com/pgcloak/pgcloak/policy"
	"github.com/pgcloak/pgcloak/scramauth"
)

// VerifierSource looks up a role's SCRAM-SHA-256 verifier when the proxy
// terminates SCRAM (server.auth.method: scram).
type VerifierSource interface {
	// Verifier returns role's verifier, or nil without an error when the
	// role has none the proxy may use (no such role, no SCRAM password,
	// excluded by the auth function): the login then fails as a wrong
	// password would.
	Verifier(ctx context.Context, role string) (*scramauth.Verifier, error)
}

// newVerifierSource builds the source server.auth names, cached for its
// cache_ttl; nil when the proxy relays authentication.
func newVerifierSource(a policy.ServerAuth, upstream string, dial func(context.Context) (net.Conn, error)) (*cachedVerifiers, error) {
	if a.Method != policy.AuthSCRAM {
		return nil, nil
	}
	ttl, err := time.ParseDuration(a.CacheTTL)
	if err != nil {
		return nil, fmt.Errorf("proxy: server.auth.cache_ttl: %w", err)
	}
	var src VerifierSource
	switch {
	case a.VerifiersFile != "":
		src = verifierFile(a.VerifiersFile)
	case a.Query.User != "" && a.Query.Database != "":
		password := ""
		if a.Query.PasswordEnv != "" {
			password = os.Getenv(a.Query.PasswordEnv)
		}
		src = &verifierQuery{user: a.Query.User, password: password, database: a.Query.Database, upstream: upstream, dial: dial}
	default:
		return nil, errors.New("proxy: server.auth.method scram needs verifiers_file, or query.user and query.database")
	}
	return &cachedVerifiers{src: src, ttl: ttl, entries: map[string]cachedVerifier{}, slot: make(chan struct{}, 1)}, nil
}

// verifierFile reads verifiers from a file in PgBouncer's auth_file form:
// one `"role" "SCRAM-SHA-256$…"` per line. It is read on every lookup the
// cache misses, so an edit takes effect within the cache's TTL.
type verifierFile string

func (f verifierFile) Verifier(_ context.Context, role string) (*scramauth.Verifier, error) {
	data, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("reading server.auth.verifiers_file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret, err := parseAuthFileLine(line)
		if err != nil {
			return nil, fmt.Errorf("server.auth.verifiers_file line %d: %w", n, err)
		}
		if name != role {
			continue
		}
		v, err := scramauth.ParseVerifier(secret)
		if errors.Is(err, scramauth.ErrNotSCRAM) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("server.auth.verifiers_file line %d: %w", n, err)
		}
		return v, nil
	}
	return nil, sc.Err()
}

// AuthFileLine is role's line in a verifiers file: `"role" "secret"`, a "
// inside doubled, as parseAuthFileLine reads it.
func AuthFileLine(role, secret string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	return q(role) + " " + q(secret)
}

// parseAuthFileLine reads `"name" "secret"`, "" inside quotes standing for ".
func parseAuthFileLine(line string) (name, secret string, err error) {
	var fields []string
	for i := 0; i < 2; i++ {
		line = strings.TrimLeft(line, " \t")
		if !strings.HasPrefix(line, `"`) {
			return "", "", errors.New(`want "role" "verifier"`)
		}
		var b strings.Builder
		j := 1
		for ; j < len(line); j++ {
			if line[j] == '"' {
				if j+1 < len(line) && line[j+1] == '"' {
					b.WriteByte('"')
					j++
					continue
				}
				break
			}
			b.WriteByte(line[j])
		}
		if j >= len(line) {
			return "", "", errors.New("unterminated quoted field")
		}
		fields = append(fields, b.String())
		line = line[j+1:]
	}
	return fields[0], fields[1], nil
}

// verifierQuery asks PostgreSQL through dbguard.AuthFunction in its
// configured database, logged in as a low-privilege role of its own over
// the same kind of connection as the sessions'. It keeps that connection
// (cachedVerifiers asks one question at a time), and uses the function
// only once it has checked that a superuser owns it and its schema: no
// other role can have planted or replaced it.
type verifierQuery struct {
	user, password, database string
	upstream                 string // host:port, for messages
	dial                     func(context.Context) (net.Conn, error)

	conn *pgconn.PgConn
}

func (q *verifierQuery) Verifier(ctx context.Context, role string) (*scramauth.Verifier, error) {
	if q.conn == nil || q.conn.IsClosed() {
		conn, err := q.connect(ctx)
		if err != nil {
			return nil, err
		}
		q.conn = conn
	}
	// Checked before every call: a role that owned it as a superuser may
	// have lost that since, and then may change it.
	if err := q.checkTrusted(ctx); err != nil {
		q.close()
		return nil, err
	}
	res := q.conn.ExecParams(ctx, "SELECT "+dbguard.AuthFunction+"($1::pg_catalog.text)", [][]byte{[]byte(role)}, nil, nil, nil).Read()
	if res.Err != nil {
		q.close()
		return nil, fmt.Errorf("auth query: %w", res.Err)
	}
	if len(res.Rows) != 1 || res.Rows[0][0] == nil {
		return nil, nil
	}
	v, err := scramauth.ParseVerifier(string(res.Rows[0][0]))
	if errors.Is(err, scramauth.ErrNotSCRAM) {
		return nil, nil
	}
	return v, err
}

func (q *verifierQuery) connect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password, cfg.Database = q.user, q.password, q.database
	host, port, err := net.SplitHostPort(q.upstream)
	if err != nil {
		return nil, err
	}
	cfg.Host = host
	if p, err := strconv.Atoi(port); err == nil {
		cfg.Port = uint16(p)
	}
	// The proxy's own dial: TLS as upstream.tls says, done before pgconn
	// sends its startup message.
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) { return q.dial(ctx) }
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.RuntimeParams = map[string]string{"application_name": "pgcloak auth", "search_path": "pg_catalog, pg_temp"}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("auth query connection as %s: %w", q.user, err)
	}
	return conn, nil
}

// checkTrusted runs dbguard.AuthFunctionTrustQuery.
func (q *verifierQuery) checkTrusted(ctx context.Context) error {
	res := q.conn.ExecParams(ctx, dbguard.AuthFunctionTrustQuery, nil, nil, nil, nil).Read()
	switch {
	case res.Err != nil:
		return fmt.Errorf("checking %s: %w", dbguard.AuthFunction, res.Err)
	case len(res.Rows) != 1 || string(res.Rows[0][0]) != "t":
		return fmt.Errorf("%s in database %s is missing, or not a SECURITY DEFINER function that a superuser owns in a schema a superuser owns and only superusers may create in: run pgcloak auth install", dbguard.AuthFunction, q.database)
	}
	return nil
}

func (q *verifierQuery) close() {
	if q.conn != nil {
		q.conn.Close(context.Background())
		q.conn = nil
	}
}

// cachedVerifiers keeps lookups, found or not, each with the salt and
// iteration count PostgreSQL asked with when it was made (PostgreSQL's
// key factors): it is reused while PostgreSQL asks with the same ones and
// within ttl. PostgreSQL's own factors change when a role's password does,
// or when a role is created (its mock factors give way to the real ones),
// so such a change takes effect at the next login; the TTL bounds
// anything else (a verifier the auth function stops returning). Lookups
// run one at a time (the auth query's one connection), each waiting login
// bounded by its context and their number by maxPendingLookups, so that a
// storm of logins fails fast instead of queueing without end.
type cachedVerifiers struct {
	src VerifierSource
	ttl time.Duration

	slot    chan struct{} // held by the lookup in progress
	pending atomic.Int32

	mu      sync.Mutex
	entries map[string]cachedVerifier
}

type cachedVerifier struct {
	v       *scramauth.Verifier
	asked   string // PostgreSQL's key factors when looked up
	expires time.Time
}

const (
	// maxCachedVerifiers bounds the cache against logins as ever new role
	// names; when it is full, roles without a verifier go first.
	maxCachedVerifiers = 10000
	// maxPendingLookups bounds the logins waiting for a lookup.
	maxPendingLookups = 64
	// nameDataLen is PostgreSQL's NAMEDATALEN: it cuts longer role names
	// in the startup packet to NAMEDATALEN-1 bytes.
	nameDataLen = 64
)

// errTooManyLookups is a login refused because too many wait for theirs.
var errTooManyLookups = errors.New("too many logins are waiting for their role's verifier")

// roleName is a startup packet's role name as PostgreSQL reads it.
func roleName(user string) string {
	if len(user) >= nameDataLen {
		return user[:nameDataLen-1]
	}
	return user
}

// Verifier returns role's verifier (role as roleName reads it) for a login
// PostgreSQL asks with key factors asked.
func (c *cachedVerifiers) Verifier(ctx context.Context, role, asked string) (*scramauth.Verifier, error) {
	if !utf8.ValidString(role) {
		// No role is named so (the catalogs hold valid UTF-8 names here);
		// PostgreSQL fails such a login as a wrong password.
		return nil, nil
	}
	if v, ok := c.cached(role, asked); ok {
		return v, nil
	}
	if c.pending.Add(1) > maxPendingLookups {
		c.pending.Add(-1)
		return nil, errTooManyLookups
	}
	defer c.pending.Add(-1)
	select {
	case c.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.slot }()
	// Another login may have looked it up while this one waited.
	if v, ok := c.cached(role, asked); ok {
		return v, nil
	}
	v, err := c.src.Verifier(ctx, role)
	if err != nil {
		return nil, err
	}
	c.store(role, cachedVerifier{v: v, asked: asked, expires: time.Now().Add(c.ttl)})
	return v, nil
}

func (c *cachedVerifiers) cached(role, asked string) (*scramauth.Verifier, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[role]
	if !ok || e.asked != asked || !time.Now().Before(e.expires) {
		return nil, false
	}
	return e.v, true
}

func (c *cachedVerifiers) store(role string, e cachedVerifier) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedVerifiers {
		for r, old := range c.entries {
			if old.v == nil {
				delete(c.entries, r)
			}
		}
		if len(c.entries) >= maxCachedVerifiers {
			clear(c.entries)
		}
	}
	c.entries[role] = e
}

// close closes the auth query's connection.
func (c *cachedVerifiers) close() {
	q, ok := c.src.(*verifierQuery)
	if !ok {
		return
	}
	c.slot <- struct{}{}
	defer func() { <-c.slot }()
	q.close()
}
