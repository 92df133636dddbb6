// Package policy owns pgcloak's configuration: its schema, strict loading with
// line-numbered errors, validation, and the lookups the rest of the proxy asks
// of it (table.column → column rule, role → grants), and the registry of the
// PostgreSQL types pgcloak knows (PGType: OIDs, names, sizes, families), which
// a column's logical type is one of. It does no I/O beyond decoding bytes
// handed to it.
package policy

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is the whole pgcloak configuration file.
type Config struct {
	Server   Server   `yaml:"server" mapstructure:"server"`
	Upstream Upstream `yaml:"upstream" mapstructure:"upstream"`
	Keystore Keystore `yaml:"keystore" mapstructure:"keystore"`
	Audit    Audit    `yaml:"audit" mapstructure:"audit"`
	Policy   Policy   `yaml:"policy" mapstructure:"policy"`
}

// Server is where the proxy listens for clients.
type Server struct {
	Listen          string    `yaml:"listen" mapstructure:"listen"`
	TLS             ServerTLS `yaml:"tls" mapstructure:"tls"`
	MaxMessageBytes int       `yaml:"max_message_bytes" mapstructure:"max_message_bytes"`
	// MaxStatementBytes bounds the SQL text of a statement the proxy must
	// parse (one on encrypted data, or any but plain DML), and with it
	// the statement's tokens; longer ones are refused with 54000. 0 means
	// DefaultMaxStatementBytes, or MaxMessageBytes when that is smaller.
	MaxStatementBytes int        `yaml:"max_statement_bytes" mapstructure:"max_statement_bytes"`
	MetricsListen     string     `yaml:"metrics_listen" mapstructure:"metrics_listen"`
	Auth              ServerAuth `yaml:"auth" mapstructure:"auth"`
	// MaxConnections caps the client sessions open at once; one more is
	// refused with 53300, as PostgreSQL refuses a client over its
	// max_connections. Cancel requests are exempt. 0 means no limit.
	MaxConnections int `yaml:"max_connections" mapstructure:"max_connections"`
	// IdleTimeout closes a session idle outside a transaction for longer
	// (FATAL 57P05, as PostgreSQL's idle_session_timeout), as a Go
	// duration; "" or "0" never does.
	IdleTimeout string `yaml:"idle_timeout" mapstructure:"idle_timeout"`
	// DrainTimeout is how long a graceful shutdown (SIGTERM) lets
	// sessions finish their transactions before closing them, as a Go
	// duration.
	DrainTimeout string `yaml:"drain_timeout" mapstructure:"drain_timeout"`
}

// IdleTimeoutDuration is server.idle_timeout; 0 when unset or invalid
// (Validate reports the latter).
func (s Server) IdleTimeoutDuration() time.Duration {
	return durationOrZero(s.IdleTimeout)
}

// DrainTimeoutDuration is server.drain_timeout; 0 (close at once) when
// invalid, which Validate reports.
func (s Server) DrainTimeoutDuration() time.Duration {
	return durationOrZero(s.DrainTimeout)
}

func durationOrZero(v string) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// Authentication methods of server.auth.method.
const (
	// AuthRelay passes PostgreSQL's authentication exchange through
	// (SCRAM channel binding then cannot work with TLS on both legs).
	AuthRelay = "relay"
	// AuthSCRAM terminates SCRAM-SHA-256 at the proxy, which checks the
	// client against the role's verifier and proves the role to
	// PostgreSQL with the key the client proved knowing.
	AuthSCRAM = "scram"
)

// ServerAuth says how clients authenticate through the proxy.
type ServerAuth struct {
	Method string `yaml:"method" mapstructure:"method"` // relay | scram
	// VerifiersFile holds `"role" "SCRAM-SHA-256$…"` lines (PgBouncer's
	// auth_file form); or Query looks them up in PostgreSQL.
	VerifiersFile string    `yaml:"verifiers_file" mapstructure:"verifiers_file"`
	Query         AuthQuery `yaml:"query" mapstructure:"query"`
	// CacheTTL is how long a looked-up verifier is reused, as a Go duration.
	CacheTTL string `yaml:"cache_ttl" mapstructure:"cache_ttl"`
}

// AuthQuery is the low-privilege role that calls pgcloak_scram.verifier
// (installed by pgcloak auth install) to look up verifiers.
type AuthQuery struct {
	User        string `yaml:"user" mapstructure:"user"`
	PasswordEnv string `yaml:"password_env" mapstructure:"password_env"`
	// Database is where the function is installed. One fixed database:
	// a client's database may hold a function of that name that its owner
	// wrote.
	Database string `yaml:"database" mapstructure:"database"`
}

// DefaultMaxStatementBytes is server.max_statement_bytes when unset: the
// 20,000-row INSERT of a bulk loader fits, and analysing what fits costs
// at most a few hundred MB (see sqlrewrite/limits.go for measurements).
const DefaultMaxStatementBytes = 1 << 20

// StatementBytesLimit is the effective server.max_statement_bytes.
func (s Server) StatementBytesLimit() int {
	switch {
	case s.MaxStatementBytes > 0:
		return s.MaxStatementBytes
	case s.MaxMessageBytes > 0:
		return min(DefaultMaxStatementBytes, s.MaxMessageBytes)
	default:
		return DefaultMaxStatementBytes
	}
}

// ServerTLS configures TLS between clients and the proxy.
type ServerTLS struct {
	Mode     string `yaml:"mode" mapstructure:"mode"` // disable | allow | require
	CertFile string `yaml:"cert_file" mapstructure:"cert_file"`
	KeyFile  string `yaml:"key_file" mapstructure:"key_file"`
}

// Upstream is the PostgreSQL server the proxy connects to.
type Upstream struct {
	Address string      `yaml:"address" mapstructure:"address"`
	TLS     UpstreamTLS `yaml:"tls" mapstructure:"tls"`
}

// UpstreamTLS configures TLS between the proxy and PostgreSQL.
type UpstreamTLS struct {
	Mode   string `yaml:"mode" mapstructure:"mode"` // disable | prefer | require | verify-full
	CAFile string `yaml:"ca_file" mapstructure:"ca_file"`
}

// Keystore selects and configures where keysets live.
type Keystore struct {
	Provider string        `yaml:"provider" mapstructure:"provider"` // local | vault
	Local    LocalKeystore `yaml:"local" mapstructure:"local"`
	Vault    VaultKeystore `yaml:"vault" mapstructure:"vault"`
	// CacheTTL is how long unwrapped keysets stay cached, as a Go duration.
	CacheTTL string `yaml:"cache_ttl" mapstructure:"cache_ttl"`
}

// LocalKeystore is a keyset file encrypted under a master key.
type LocalKeystore struct {
	Path          string `yaml:"path" mapstructure:"path"`
	MasterKeyEnv  string `yaml:"master_key_env" mapstructure:"master_key_env"`
	MasterKeyFile string `yaml:"master_key_file" mapstructure:"master_key_file"`
}

// VaultKeystore keeps keysets in Vault KV v2, wrapped by a transit key.
type VaultKeystore struct {
	Address string `yaml:"address" mapstructure:"address"`
	// CAFile verifies Vault's TLS certificate ("" uses the system roots).
	CAFile string `yaml:"ca_file" mapstructure:"ca_file"`
	// Auth is token or approle.
	Auth string `yaml:"auth" mapstructure:"auth"`
	// TokenEnv and TokenFile give the token for auth: token (the file
	// wins when set).
	TokenEnv  string       `yaml:"token_env" mapstructure:"token_env"`
	TokenFile string       `yaml:"token_file" mapstructure:"token_file"`
	AppRole   VaultAppRole `yaml:"approle" mapstructure:"approle"`
	// KVMount/KVPath hold one KV v2 document per key; TransitMount/KEK
	// name the transit key that wraps the keysets.
	KVMount      string `yaml:"kv_mount" mapstructure:"kv_mount"`
	KVPath       string `yaml:"kv_path" mapstructure:"kv_path"`
	TransitMount string `yaml:"transit_mount" mapstructure:"transit_mount"`
	KEK          string `yaml:"kek" mapstructure:"kek"`
	// Timeout bounds each request to Vault, as a Go duration.
	Timeout string `yaml:"timeout" mapstructure:"timeout"`
	// GrantsPath, when set, is the KV v2 path (in KVMount) of the
	// role → keys grants document, which then replaces policy.roles; it is
	// re-read every GrantsInterval and on SIGHUP.
	GrantsPath     string `yaml:"grants_path" mapstructure:"grants_path"`
	GrantsInterval string `yaml:"grants_interval" mapstructure:"grants_interval"`
}

// VaultAppRole is where AppRole credentials come from.
type VaultAppRole struct {
	Mount        string `yaml:"mount" mapstructure:"mount"`
	RoleID       string `yaml:"role_id" mapstructure:"role_id"`
	RoleIDFile   string `yaml:"role_id_file" mapstructure:"role_id_file"`
	SecretIDEnv  string `yaml:"secret_id_env" mapstructure:"secret_id_env"`
	SecretIDFile string `yaml:"secret_id_file" mapstructure:"secret_id_file"`
}

// Audit configures the plaintext-access audit trail: one JSON line per
// statement that touched an encrypted column (see package audit).
type Audit struct {
	// Output is where records go: "" (no audit trail), "stdout",
	// "syslog" (the local syslog daemon), "syslog+udp://host:port",
	// "syslog+tcp://host:port", or else a file path.
	Output string `yaml:"output" mapstructure:"output"`
	// MaxSizeMB rotates the file when it reaches this many megabytes;
	// MaxBackups rotated files are kept (0 keeps them all).
	MaxSizeMB  int `yaml:"max_size_mb" mapstructure:"max_size_mb"`
	MaxBackups int `yaml:"max_backups" mapstructure:"max_backups"`
	// OnFull is what a statement does when Buffer records wait to be
	// written: AuditBlock waits for room, AuditDrop drops its record.
	OnFull string `yaml:"on_full" mapstructure:"on_full"`
	Buffer int    `yaml:"buffer" mapstructure:"buffer"`
}

// Values of audit.output that are not file paths.
const (
	AuditStdout = "stdout"
	AuditSyslog = "syslog"
)

// Values of audit.on_full.
const (
	AuditBlock = "block"
	AuditDrop  = "drop"
)

// RemoteSyslog parses an output of the form syslog+udp://host:port or
// syslog+tcp://host:port into a network and an address for log/syslog.Dial;
// network is "" when the output is not a URL. An output with "://" is always
// read as a URL, so that a misspelt scheme is an error, not a file name.
func (a Audit) RemoteSyslog() (network, addr string, err error) {
	if !strings.Contains(a.Output, "://") {
		return "", "", nil
	}
	u, err := url.Parse(a.Output)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a URL: %w", a.Output, err)
	}
	switch u.Scheme {
	case "syslog+udp", "syslog+tcp":
	default:
		return "", "", fmt.Errorf("%q: the scheme must be syslog+udp or syslog+tcp", a.Output)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("%q: only syslog+udp://host:port or syslog+tcp://host:port", a.Output)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" || port == "" {
		return "", "", fmt.Errorf("%q: the address must be host:port", a.Output)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: port %q is not a port number", a.Output, port)
	}
	return strings.TrimPrefix(u.Scheme, "syslog+"), u.Host, nil
}

// Policy names the keys, the encrypted columns and the role grants.
type Policy struct {
	// AdminRole is the database role that owns pgcloak's own objects in
	// the database (the migration state) and runs its admin commands:
	// only objects it (or a superuser) owns are trusted. "" trusts
	// superusers only.
	AdminRole string   `yaml:"admin_role" mapstructure:"admin_role"`
	Keys      []Key    `yaml:"keys" mapstructure:"keys"`
	Columns   []Column `yaml:"columns" mapstructure:"columns"`
	Roles     []Role   `yaml:"roles" mapstructure:"roles"`
}

// KeyKind says how a key encrypts.
type KeyKind string

const (
	// Deterministic keys (AES-SIV) encrypt equal plaintexts to equal
	// ciphertexts, so PostgreSQL can compare them for equality.
	Deterministic KeyKind = "deterministic"
	// Randomized keys (AES-256-GCM) reveal nothing, not even equality.
	Randomized KeyKind = "randomized"
	// Ordered keys store an order-preserving term (CLWW) in front of an
	// AES-SIV ciphertext, so PostgreSQL can compare, sort and index them;
	// they reveal order and equality. Only the types in OrderedTypes.
	Ordered KeyKind = "ordered"
)

// OrderedTypes are the logical types an ordered key can encrypt: those
// whose PostgreSQL order pgcloak reproduces byte for byte (text in
// COLLATE "C" byte order).
var OrderedTypes = []LogicalType{TypeInt2, TypeInt4, TypeInt8, TypeFloat8, TypeNumeric,
	TypeDate, TypeTimestamp, TypeTimestamptz, TypeText}

// OrderedType reports whether an ordered key can encrypt t.
func OrderedType(t LogicalType) bool {
	for _, o := range OrderedTypes {
		if o == t {
			return true
		}
	}
	return false
}

// Key is one named key (one Tink keyset).
type Key struct {
	Name string  `yaml:"name"`
	Kind KeyKind `yaml:"kind"`
	Line int     `yaml:"-"`
}

// Column places one table column under a key.
type Column struct {
	Table  string      `yaml:"table"`
	Column string      `yaml:"column"`
	Key    string      `yaml:"key"`
	Type   LogicalType `yaml:"type"`
	Line   int         `yaml:"-"`
}

// OnDenied says what a role without a key's read grant sees.
type OnDenied string

const (
	DeniedNull       OnDenied = "null"
	DeniedMask       OnDenied = "mask"
	DeniedCiphertext OnDenied = "ciphertext"
	DeniedError      OnDenied = "error"
)

// Role grants a database role the use of keys.
type Role struct {
	Role     string   `yaml:"role" json:"role"`
	Read     []string `yaml:"read" json:"read"`
	Write    []string `yaml:"write" json:"write"`
	OnDenied OnDenied `yaml:"on_denied" json:"on_denied"`
	// ServerSideCode: "allow" lets the role run code the proxy cannot
	// analyse (DO blocks, CREATE FUNCTION or PROCEDURE bodies, CALL);
	// "" refuses it.
	ServerSideCode ServerSideCode `yaml:"server_side_code" json:"server_side_code"`
	Line           int            `yaml:"-" json:"-"`
}

// ServerSideCode is a role's permission to run server-side code.
type ServerSideCode string

// AllowServerSideCode is the value of server_side_code that allows it.
const AllowServerSideCode ServerSideCode = "allow"

// Defaults returns the configuration every loaded file starts from.
func Defaults() Config {
	return Config{
		Server: Server{
			Listen:          "127.0.0.1:6432",
			TLS:             ServerTLS{Mode: "allow"},
			MaxMessageBytes: 64 << 20,
			Auth:            ServerAuth{Method: AuthRelay, CacheTTL: "30s"},
			// MaxConnections 0 and IdleTimeout "": no limit, no timeout,
			// as before they existed.
			DrainTimeout: "30s",
			// MaxStatementBytes stays 0: DefaultMaxStatementBytes, or
			// MaxMessageBytes when that is set lower (StatementBytesLimit).
		},
		Upstream: Upstream{
			Address: "127.0.0.1:5432",
			TLS:     UpstreamTLS{Mode: "disable"},
		},
		Keystore: Keystore{
			Provider: "local",
			Local: LocalKeystore{
				Path:         "./pgcloak-keys.json",
				MasterKeyEnv: "PGCLOAK_MASTER_KEY",
			},
			Vault: VaultKeystore{
				Auth:           "token",
				TokenEnv:       "VAULT_TOKEN",
				AppRole:        VaultAppRole{Mount: "approle", SecretIDEnv: "PGCLOAK_VAULT_SECRET_ID"},
				KVMount:        "secret",
				KVPath:         "pgcloak/keys",
				TransitMount:   "transit",
				KEK:            "pgcloak-kek",
				Timeout:        "10s",
				GrantsInterval: "30s",
			},
			CacheTTL: "5m",
		},
		// Output stays "": no audit trail unless asked for.
		Audit: Audit{MaxSizeMB: 100, MaxBackups: 10, OnFull: AuditBlock, Buffer: 4096},
	}
}

// Problem is one thing wrong with a configuration, at a line of its file
// (0 when the problem has no single line).
type Problem struct {
	Line    int
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s", p.Line, p.Message)
	}
	return p.Message
}

// Problems is a list of configuration problems; as an error it lists them all.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}
