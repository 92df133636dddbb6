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
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

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
	Verifier(ctx context.Context, role, database string) (*scramauth.Verifier, error)
}

// newVerifierSource builds the source server.auth names, cached for its
// cache_ttl; nil when the proxy relays authentication.
func newVerifierSource(a policy.ServerAuth, dial func(context.Context) (net.Conn, error)) (*cachedVerifiers, error) {
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
	case a.Query.User != "":
		password := ""
		if a.Query.PasswordEnv != "" {
			password = os.Getenv(a.Query.PasswordEnv)
		}
		src = &verifierQuery{user: a.Query.User, password: password, database: a.Query.Database, dial: dial}
	default:
		return nil, errors.New("proxy: server.auth.method scram needs verifiers_file or query.user")
	}
	return &cachedVerifiers{src: src, ttl: ttl, entries: map[string]cachedVerifier{}}, nil
}

// verifierFile reads verifiers from a file in PgBouncer's auth_file form:
// one `"role" "SCRAM-SHA-256$…"` per line. It is read on every lookup the
// cache misses, so an edit takes effect within the cache's TTL.
type verifierFile string

func (f verifierFile) Verifier(_ context.Context, role, _ string) (*scramauth.Verifier, error) {
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

// verifierQuery asks PostgreSQL through dbguard.AuthFunction, logged in as
// a low-privilege role of its own over the same kind of connection as the
// sessions'. It keeps one connection per database and asks one question
// at a time: a storm of logins as unknown roles costs queries on open
// connections, not new connections (each with its own SCRAM exchange).
type verifierQuery struct {
	user, password, database string
	dial                     func(context.Context) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*pgconn.PgConn
}

// maxAuthConns bounds the auth query's connections (one per database).
const maxAuthConns = 16

func (q *verifierQuery) Verifier(ctx context.Context, role, database string) (*scramauth.Verifier, error) {
	if q.database != "" {
		database = q.database
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	conn := q.conns[database]
	if conn == nil || conn.IsClosed() {
		var err error
		if conn, err = q.connect(ctx, database); err != nil {
			return nil, err
		}
		if q.conns == nil || len(q.conns) >= maxAuthConns {
			q.closeLocked()
			q.conns = map[string]*pgconn.PgConn{}
		}
		q.conns[database] = conn
	}
	res := conn.ExecParams(ctx, "SELECT "+dbguard.AuthFunction+"($1)", [][]byte{[]byte(role)}, []uint32{pgtype.TextOID}, nil, nil).Read()
	if res.Err != nil {
		conn.Close(context.Background())
		delete(q.conns, database)
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

func (q *verifierQuery) connect(ctx context.Context, database string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.User, cfg.Password, cfg.Database = q.user, q.password, database
	// The proxy's own dial: TLS as upstream.tls says, done before pgconn
	// sends its startup message.
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) { return q.dial(ctx) }
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.RuntimeParams = map[string]string{"application_name": "pgcloak auth"}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("auth query connection as %s: %w", q.user, err)
	}
	return conn, nil
}

func (q *verifierQuery) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closeLocked()
}

func (q *verifierQuery) closeLocked() {
	for db, c := range q.conns {
		c.Close(context.Background())
		delete(q.conns, db)
	}
}

// cachedVerifiers keeps lookups, found or not, for ttl: a login storm
// costs one query per role and TTL, and a password change takes effect
// within the TTL (at once when PostgreSQL then asks with another salt: see
// forget).
type cachedVerifiers struct {
	src VerifierSource
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]cachedVerifier
}

type cachedVerifier struct {
	v       *scramauth.Verifier
	expires time.Time
}

// maxCachedVerifiers bounds the cache against logins as ever new role
// names.
const maxCachedVerifiers = 10000

func (c *cachedVerifiers) Verifier(ctx context.Context, role, database string) (*scramauth.Verifier, error) {
	key := strconv.Quote(role) + "@" + database
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && time.Now().Before(e.expires) {
		return e.v, nil
	}
	v, err := c.src.Verifier(ctx, role, database)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedVerifiers {
		clear(c.entries)
	}
	c.entries[key] = cachedVerifier{v: v, expires: time.Now().Add(c.ttl)}
	return v, nil
}

// close closes the auth query's connections.
func (c *cachedVerifiers) close() {
	if q, ok := c.src.(*verifierQuery); ok {
		q.close()
	}
}

// forget drops role's entry: PostgreSQL holds another verifier for it.
func (c *cachedVerifiers) forget(role, database string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, strconv.Quote(role)+"@"+database)
}
