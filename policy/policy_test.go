package policy

import (
	"strings"
	"testing"
	"time"
)

const validConfig = `server:
  listen: 127.0.0.1:7432
upstream:
  address: 127.0.0.1:5432
policy:
  keys:
    - {name: ssn, kind: deterministic}
    - {name: clinical, kind: randomized}
  columns:
    - {table: public.patients, column: ssn, key: ssn, type: text}
    - {table: public.patients, column: diagnosis, key: clinical, type: text}
    - {table: public.visits, column: patient_ssn, key: ssn, type: text}
  roles:
    - {role: doctor, read: [ssn, clinical], write: [ssn, clinical]}
    - {role: billing, read: [ssn], on_denied: mask}
`

func TestLoadValid(t *testing.T) {
	cfg, err := Load([]byte(validConfig))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Server.Listen != "127.0.0.1:7432" {
		t.Errorf("listen = %q", cfg.Server.Listen)
	}
	if cfg.Server.MaxMessageBytes != 64<<20 || cfg.Keystore.Provider != "local" || cfg.Server.TLS.Mode != "allow" {
		t.Errorf("defaults not applied: %+v", cfg.Server)
	}
	if cfg.Server.Auth.Method != AuthRelay || cfg.Server.Auth.CacheTTL != "30s" {
		t.Errorf("auth defaults not applied: %+v", cfg.Server.Auth)
	}
	if want := (Audit{MaxSizeMB: 100, MaxBackups: 10, OnFull: AuditBlock, Buffer: 4096}); cfg.Audit != want {
		t.Errorf("audit defaults = %+v, want %+v", cfg.Audit, want)
	}
	if cfg.Policy.Columns[1].Line != 11 {
		t.Errorf("column line = %d, want 11", cfg.Policy.Columns[1].Line)
	}
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings, each must appear
	}{
		{"misspelt section field", "server:\n  listn: x\n", []string{`line 2: unknown field "listn" in server`}},
		{"unknown top-level", "servr: {}\n", []string{`line 1: unknown field "servr" in the top level`}},
		{"misspelt key field", "policy:\n  keys:\n    - {name: a, knd: randomized}\n", []string{`line 3: unknown field "knd" in a policy.keys entry`}},
		{"misspelt column field", "policy:\n  keys: [{name: a, kind: randomized}]\n  columns:\n    - {table: public.t, colum: c, key: a, type: text}\n", []string{`line 4: unknown field "colum"`}},
		{"misspelt role field", "policy:\n  roles:\n    - {role: r, reed: [a]}\n", []string{`line 3: unknown field "reed"`}},
		{"undefined key in column", "policy:\n  columns:\n    - {table: public.t, column: c, key: nope, type: text}\n", []string{`line 3: column c names undefined key "nope"`}},
		{"undefined key in grant", "policy:\n  keys: [{name: a, kind: randomized}]\n  roles:\n    - {role: r, read: [a, b]}\n", []string{`line 4: role "r" grants undefined key "b"`}},
		{"bad kind", "policy:\n  keys:\n    - {name: a, kind: fancy}\n", []string{`line 3: key "a": kind "fancy"`}},
		{"bad type", "policy:\n  keys: [{name: a, kind: randomized}]\n  columns:\n    - {table: public.t, column: c, key: a, type: blob}\n", []string{`line 4: column c: type "blob"`}},
		{"unqualified table", "policy:\n  keys: [{name: a, kind: randomized}]\n  columns:\n    - {table: t, column: c, key: a, type: text}\n", []string{`must be schema-qualified`}},
		{"duplicate column", "policy:\n  keys: [{name: a, kind: randomized}]\n  columns:\n    - {table: public.t, column: c, key: a, type: text}\n    - {table: public.t, column: c, key: a, type: int4}\n", []string{`line 5: column public.t.c is listed twice (first on line 4)`}},
		{"duplicate key", "policy:\n  keys:\n    - {name: a, kind: randomized}\n    - {name: a, kind: deterministic}\n", []string{`line 4: key "a" is defined twice`}},
		{"ordered key on an unordered type", "policy:\n  keys: [{name: o, kind: ordered}]\n  columns:\n    - {table: public.t, column: c, key: o, type: uuid}\n",
			[]string{`line 4: column c: ordered key "o" cannot encrypt type uuid (ordered keys take int2, int4, int8, float8, numeric, date, timestamp, timestamptz, text)`}},
		{"ordered key over two types", "policy:\n  keys: [{name: o, kind: ordered}]\n  columns:\n    - {table: public.t, column: a, key: o, type: int4}\n    - {table: public.t, column: b, key: o, type: date}\n",
			[]string{`line 5: column b: ordered key "o" already encrypts type int4 (line 4)`}},
		{"ciphertext shown for an ordered key", "policy:\n  keys: [{name: o, kind: ordered}, {name: d, kind: deterministic}]\n  roles:\n    - {role: r, read: [d], on_denied: ciphertext}\n",
			[]string{`line 4: role "r": on_denied: ciphertext would show it ordered key "o"'s ciphertexts`}},
		{"bad on_denied", "policy:\n  roles:\n    - {role: r, on_denied: hide}\n", []string{`on_denied "hide"`}},
		{"bad server_side_code", "policy:\n  roles:\n    - {role: r, server_side_code: yes}\n", []string{`line 3: role "r": server_side_code "yes" is not allow`}},
		{"bad tls mode", "server:\n  tls: {mode: maybe}\n", []string{`server.tls.mode: "maybe"`}},
		{"require without cert", "server:\n  tls: {mode: require}\n", []string{`require but cert_file or key_file is empty`}},
		{"bad upstream tls", "upstream:\n  tls: {mode: sometimes}\n", []string{`upstream.tls.mode`}},
		{"tiny max message", "server:\n  max_message_bytes: 10\n", []string{`max_message_bytes must be at least 1024`}},
		{"tiny max statement", "server:\n  max_statement_bytes: 100\n", []string{`server.max_statement_bytes must be at least 1024, got 100`}},
		{"negative max statement", "server:\n  max_statement_bytes: -1\n", []string{`server.max_statement_bytes must be at least 1024`}},
		{"max statement over max message", "server:\n  max_message_bytes: 4096\n  max_statement_bytes: 8192\n",
			[]string{`server.max_statement_bytes (8192) must not exceed server.max_message_bytes (4096)`}},
		{"negative max connections", "server:\n  max_connections: -1\n", []string{`server.max_connections must be 0 (no limit) or more, got -1`}},
		{"bad idle timeout", "server:\n  idle_timeout: a while\n", []string{`server.idle_timeout: "a while" is not a duration`}},
		{"negative idle timeout", "server:\n  idle_timeout: -1s\n", []string{`server.idle_timeout: "-1s"`}},
		{"bad drain timeout", "server:\n  drain_timeout: soon\n", []string{`server.drain_timeout: "soon" is not a duration`}},
		{"empty drain timeout", "server:\n  drain_timeout: ''\n", []string{`server.drain_timeout: ""`}},
		{"bad auth method", "server:\n  auth: {method: trust}\n", []string{`server.auth.method: "trust" is not one of relay, scram`}},
		{"scram without a source", "server:\n  auth: {method: scram}\n", []string{`needs exactly one of verifiers_file and query.user`}},
		{"scram with both sources", "server:\n  auth: {method: scram, verifiers_file: f, query: {user: a, password_env: E, database: d}}\n", []string{`needs exactly one of`}},
		{"auth query without a database", "server:\n  auth: {method: scram, query: {user: a, password_env: E}}\n", []string{`server.auth.query.database is empty`}},
		{"source without scram", "server:\n  auth: {verifiers_file: f}\n", []string{`used only with method scram`}},
		{"auth query without a password", "server:\n  auth: {method: scram, query: {user: a, database: d}}\n", []string{`server.auth.query.password_env is empty`}},
		{"bad auth cache ttl", "server:\n  auth: {method: scram, verifiers_file: f, cache_ttl: often}\n", []string{`server.auth.cache_ttl`}},
		{"misspelt auth field", "server:\n  auth:\n    query: {usr: a}\n", []string{`line 3: unknown field "usr" in server.auth.query`}},
		{"not yaml", "server: [\n", []string{`line`}},
		{"vault without address", "keystore:\n  provider: vault\n", []string{`keystore.vault.address is empty`}},
		{"approle without ids", "keystore:\n  provider: vault\n  vault: {address: 'https://v:8200', auth: approle, approle: {secret_id_env: ''}}\n",
			[]string{`role_id or role_id_file is required`, `secret_id_env or secret_id_file is required`}},
		{"bad vault timeout", "keystore:\n  vault: {timeout: soon}\n", []string{`keystore.vault.timeout: "soon"`}},
		{"misspelt approle field", "keystore:\n  vault:\n    approle: {role: x}\n", []string{`line 3: unknown field "role" in keystore.vault.approle`}},
		{"misspelt audit field", "audit:\n  ouput: stdout\n", []string{`line 2: unknown field "ouput" in audit`}},
		{"bad audit on_full", "audit: {output: stdout, on_full: wait}\n", []string{`audit.on_full: "wait" is not one of block, drop`}},
		{"zero audit max size", "audit: {max_size_mb: 0}\n", []string{`audit.max_size_mb must be greater than 0, got 0`}},
		{"negative audit backups", "audit: {max_backups: -1}\n", []string{`audit.max_backups must not be negative, got -1`}},
		{"zero audit buffer", "audit: {buffer: 0}\n", []string{`audit.buffer must be greater than 0, got 0`}},
		{"audit syslog without a port", "audit: {output: 'syslog+udp://logs'}\n", []string{`audit.output: "syslog+udp://logs": the address must be host:port`}},
		{"audit syslog bad port", "audit: {output: 'syslog+tcp://logs:http'}\n", []string{`audit.output: "syslog+tcp://logs:http" is not a URL`, `invalid port`}},
		{"audit syslog with a path", "audit: {output: 'syslog+tcp://logs:514/x'}\n", []string{`only syslog+udp://host:port or syslog+tcp://host:port`}},
		{"audit syslog port out of range", "audit: {output: 'syslog+udp://logs:70000'}\n", []string{`port "70000" is not a port number`}},
		{"audit unknown scheme", "audit: {output: 'syslog+tls://logs:6514'}\n", []string{`the scheme must be syslog+udp or syslog+tcp`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.yaml))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestTypeAliases(t *testing.T) {
	tests := []struct {
		in   string
		want LogicalType
		ok   bool
	}{
		{"text", TypeText, true},
		{"INTEGER", TypeInt4, true},
		{"bigint", TypeInt8, true},
		{"timestamp with time zone", TypeTimestamptz, true},
		{"double precision", TypeFloat8, true},
		{"character varying", TypeVarchar, true},
		{"blob", "", false},
	}
	for _, tt := range tests {
		got, ok := ParseLogicalType(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseLogicalType(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	cfg, err := Load([]byte("policy:\n  keys: [{name: a, kind: randomized}]\n  columns:\n    - {table: public.t, column: c, key: a, type: integer}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.Columns[0].Type != TypeInt4 {
		t.Errorf("alias not normalised: %q", cfg.Policy.Columns[0].Type)
	}
}

func TestOrderedKeysTakeTheOrderedTypes(t *testing.T) {
	for _, typ := range OrderedTypes {
		cfg, err := Load([]byte("policy:\n  keys: [{name: o, kind: ordered}]\n  columns:\n    - {table: public.t, column: c, key: o, type: " + string(typ) + "}\n"))
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		r := NewIndex(cfg.Policy).Column("public", "t", "c")
		if r == nil || !r.Ordered() || !r.Deterministic() {
			t.Fatalf("%s: rule = %+v, want ordered (and equal plaintexts, equal ciphertexts)", typ, r)
		}
		if got := string(r.AssociatedData()); got != "pgcloak:ordered-key:o" {
			t.Errorf("%s: associated data %q, want the key's", typ, got)
		}
	}
}

func TestIndexLookups(t *testing.T) {
	cfg, err := Load([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	idx := NewIndex(cfg.Policy)
	ssn := idx.Column("public", "patients", "ssn")
	if ssn == nil || !ssn.Deterministic() || ssn.KeyName != "ssn" || ssn.Type != TypeText {
		t.Fatalf("ssn rule = %+v", ssn)
	}
	if idx.Column("other", "patients", "ssn") != nil {
		t.Error("other.patients must not be a policy table")
	}
	if idx.Column("public", "patients", "name") != nil {
		t.Error("plain column found as encrypted")
	}
	diag := idx.Column("public", "patients", "diagnosis")
	visit := idx.Column("public", "visits", "patient_ssn")
	tests := []struct {
		name string
		a, b *ColumnRule
		want bool
	}{
		{"same column", ssn, ssn, true},
		{"shared deterministic key", ssn, visit, true},
		{"different keys", ssn, diag, false},
		{"nil", ssn, nil, false},
	}
	for _, tt := range tests {
		if got := tt.a.Interchangeable(tt.b); got != tt.want {
			t.Errorf("%s: Interchangeable = %v, want %v", tt.name, got, tt.want)
		}
	}
	if string(ssn.AssociatedData()) != string(visit.AssociatedData()) {
		t.Error("columns sharing a deterministic key must share associated data")
	}
	if string(diag.AssociatedData()) == string(ssn.AssociatedData()) {
		t.Error("randomized column must have its own associated data")
	}
	if got := idx.TablesNamed("patients"); len(got) != 1 || got[0].Qualified() != "public.patients" {
		t.Errorf("TablesNamed = %v", got)
	}

	grants := idx.Grants()
	doctor, billing, nobody := grants.For("doctor"), grants.For("billing"), grants.For("nobody")
	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"doctor reads clinical", doctor.CanRead("clinical"), true},
		{"doctor writes ssn", doctor.CanWrite("ssn"), true},
		{"billing reads ssn", billing.CanRead("ssn"), true},
		{"billing reads clinical", billing.CanRead("clinical"), false},
		{"billing writes ssn", billing.CanWrite("ssn"), false},
		{"unknown role reads", nobody.CanRead("ssn"), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if billing.OnDenied != DeniedMask || nobody.OnDenied != DeniedNull || doctor.OnDenied != DeniedNull {
		t.Errorf("on_denied: billing %q nobody %q doctor %q", billing.OnDenied, nobody.OnDenied, doctor.OnDenied)
	}
}

// TestStatementBytesLimit: unset, server.max_statement_bytes is 1 MiB, or
// max_message_bytes when that is smaller (a statement cannot be longer
// than its message); set, it is what the file says.
func TestStatementBytesLimit(t *testing.T) {
	tests := []struct {
		yaml string
		want int
	}{
		{"", DefaultMaxStatementBytes},
		{"server:\n  max_message_bytes: 2048\n", 2048},
		{"server:\n  max_statement_bytes: 4096\n", 4096},
		{"server:\n  max_message_bytes: 8388608\n  max_statement_bytes: 8388608\n", 8 << 20},
	}
	for _, tt := range tests {
		cfg, err := Load([]byte(tt.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if got := cfg.Server.StatementBytesLimit(); got != tt.want {
			t.Errorf("%q: limit %d, want %d", tt.yaml, got, tt.want)
		}
	}
	if got := (Server{}).StatementBytesLimit(); got != DefaultMaxStatementBytes {
		t.Errorf("zero Server: limit %d, want the default", got)
	}
}

// TestSessionLifetimeSettings: by default there is no connection limit and
// no idle timeout, as before the settings existed, and a shutdown drains
// for 30s; "0" turns the idle timeout off as "" does.
func TestSessionLifetimeSettings(t *testing.T) {
	tests := []struct {
		yaml        string
		maxConns    int
		idle, drain time.Duration
	}{
		{"", 0, 0, 30 * time.Second},
		{"server:\n  max_connections: 100\n  idle_timeout: 5m\n  drain_timeout: 2s\n", 100, 5 * time.Minute, 2 * time.Second},
		{"server:\n  idle_timeout: '0'\n  drain_timeout: '0'\n", 0, 0, 0},
	}
	for _, tt := range tests {
		cfg, err := Load([]byte(tt.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		s := cfg.Server
		if s.MaxConnections != tt.maxConns || s.IdleTimeoutDuration() != tt.idle || s.DrainTimeoutDuration() != tt.drain {
			t.Errorf("%q: max_connections %d idle %v drain %v, want %d %v %v", tt.yaml,
				s.MaxConnections, s.IdleTimeoutDuration(), s.DrainTimeoutDuration(), tt.maxConns, tt.idle, tt.drain)
		}
	}
}

func TestServerSideCodeGrant(t *testing.T) {
	cfg, err := Load([]byte("policy:\n  admin_role: pgcloak_admin\n  roles:\n    - {role: etl, server_side_code: allow}\n    - {role: app}\n"))
	if err != nil {
		t.Fatal(err)
	}
	idx := NewIndex(cfg.Policy)
	if !idx.Grants().For("etl").ServerSideCode || idx.Grants().For("app").ServerSideCode || idx.Grants().For("nobody").ServerSideCode {
		t.Fatal("server_side_code: only etl may run server-side code")
	}
	if idx.AdminRole() != "pgcloak_admin" {
		t.Fatalf("admin_role = %q", idx.AdminRole())
	}
}

func TestAuditOutputKinds(t *testing.T) {
	tests := []struct {
		output, network, addr string
	}{
		{"", "", ""},
		{"stdout", "", ""},
		{"syslog", "", ""},
		{"/var/log/pgcloak/audit.log", "", ""},
		{"syslog+udp://127.0.0.1:514", "udp", "127.0.0.1:514"},
		{"syslog+tcp://logs.example:6514", "tcp", "logs.example:6514"},
		{"syslog+udp://[::1]:514", "udp", "[::1]:514"},
	}
	for _, tt := range tests {
		network, addr, err := Audit{Output: tt.output}.RemoteSyslog()
		if err != nil || network != tt.network || addr != tt.addr {
			t.Errorf("RemoteSyslog(%q) = %q, %q, %v; want %q, %q", tt.output, network, addr, err, tt.network, tt.addr)
		}
	}
}
