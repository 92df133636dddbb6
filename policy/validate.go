package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// minStatementBytes is the smallest server.max_statement_bytes: below it,
// ordinary statements on encrypted columns would be refused.
const minStatementBytes = 1024

// Validate checks everything that can be checked without a database or a key
// store: allowed values, required fields, and that every reference names
// something defined. It returns every problem, in file order.
func (c *Config) Validate() Problems {
	var ps Problems
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
	}

	oneOf(&ps, "server.tls.mode", c.Server.TLS.Mode, "disable", "allow", "require")
	if c.Server.TLS.Mode == "require" && (c.Server.TLS.CertFile == "" || c.Server.TLS.KeyFile == "") {
		add(0, "server.tls.mode is require but cert_file or key_file is empty")
	}
	if (c.Server.TLS.CertFile == "") != (c.Server.TLS.KeyFile == "") {
		add(0, "server.tls: cert_file and key_file must be set together")
	}
	if c.Server.Listen == "" {
		add(0, "server.listen is empty")
	}
	if c.Server.MaxMessageBytes < 1024 {
		add(0, "server.max_message_bytes must be at least 1024, got %d", c.Server.MaxMessageBytes)
	}
	switch n := c.Server.MaxStatementBytes; {
	case n == 0: // unset: StatementBytesLimit derives it
	case n < minStatementBytes:
		add(0, "server.max_statement_bytes must be at least %d, got %d", minStatementBytes, n)
	case n > c.Server.MaxMessageBytes:
		add(0, "server.max_statement_bytes (%d) must not exceed server.max_message_bytes (%d)", n, c.Server.MaxMessageBytes)
	}
	ps = append(ps, c.Server.validateLifetimes()...)
	ps = append(ps, c.Server.Auth.validate()...)
	if c.Upstream.Address == "" {
		add(0, "upstream.address is empty")
	}
	oneOf(&ps, "upstream.tls.mode", c.Upstream.TLS.Mode, "disable", "prefer", "require", "verify-full")
	oneOf(&ps, "keystore.provider", c.Keystore.Provider, "local", "vault")
	if _, err := time.ParseDuration(c.Keystore.CacheTTL); err != nil {
		add(0, "keystore.cache_ttl: %v", err)
	}
	oneOf(&ps, "keystore.vault.auth", c.Keystore.Vault.Auth, "token", "approle")
	ps = append(ps, c.Keystore.Vault.validate(c.Keystore.Provider == "vault")...)
	ps = append(ps, c.Audit.validate()...)

	keys := map[string]*Key{}
	for i := range c.Policy.Keys {
		k := &c.Policy.Keys[i]
		switch {
		case k.Name == "":
			add(k.Line, "key has no name")
		case keys[k.Name] != nil:
			add(k.Line, "key %q is defined twice (first on line %d)", k.Name, keys[k.Name].Line)
		default:
			keys[k.Name] = k
		}
		if k.Kind != Deterministic && k.Kind != Randomized && k.Kind != Ordered {
			add(k.Line, "key %q: kind %q is not one of deterministic, randomized, ordered", k.Name, k.Kind)
		}
	}

	seen := map[string]int{}
	orderedType := map[string]Column{} // an ordered key's first column
	for _, col := range c.Policy.Columns {
		schema, table, ok := splitQualified(col.Table)
		if !ok {
			add(col.Line, "column table %q must be schema-qualified, like public.%s", col.Table, col.Table)
		}
		if col.Column == "" {
			add(col.Line, "column entry for %q has no column name", col.Table)
		}
		name := schema + "." + table + "." + col.Column
		if first, dup := seen[name]; dup {
			add(col.Line, "column %s is listed twice (first on line %d)", name, first)
		}
		seen[name] = col.Line
		if col.Key == "" {
			add(col.Line, "column %s has no key", col.Column)
		} else if keys[col.Key] == nil {
			add(col.Line, "column %s names undefined key %q", col.Column, col.Key)
		}
		if !col.Type.Valid() {
			add(col.Line, "column %s: type %q is not one of %s", col.Column, col.Type,
				strings.Join(LogicalTypeNames(), ", "))
		} else if k := keys[col.Key]; k != nil && k.Kind == Ordered && !OrderedType(col.Type) {
			names := make([]string, len(OrderedTypes))
			for i, t := range OrderedTypes {
				names[i] = string(t)
			}
			add(col.Line, "column %s: ordered key %q cannot encrypt type %s (ordered keys take %s)", col.Column, col.Key, col.Type,
				strings.Join(names, ", "))
		} else if k := keys[col.Key]; k != nil && k.Kind == Ordered {
			// Terms of equal bit patterns are equal whatever the type:
			// one type per key keeps an int4 ciphertext from reading
			// as a date in a column of the same key.
			if first, ok := orderedType[col.Key]; ok && first.Type != col.Type {
				add(col.Line, "column %s: ordered key %q already encrypts type %s (line %d); an ordered key's columns must share one type", col.Column, col.Key, first.Type, first.Line)
			} else if !ok {
				orderedType[col.Key] = col
			}
		}
	}

	ps = append(ps, validateRoles(keys, c.Policy.Roles)...)
	return ps.sorted()
}

// ValidateGrants checks role grants that come from elsewhere than the
// config file (a Vault document) against the policy's keys.
func (p Policy) ValidateGrants(roles []Role) Problems {
	keys := map[string]*Key{}
	for i := range p.Keys {
		keys[p.Keys[i].Name] = &p.Keys[i]
	}
	return validateRoles(keys, roles)
}

func validateRoles(keys map[string]*Key, roles []Role) Problems {
	var ps Problems
	add := func(line int, format string, args ...any) {
		ps = append(ps, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
	}
	seen := map[string]int{}
	for i, r := range roles {
		if r.Role == "" {
			add(r.Line, "role entry %d has no role name", i+1)
		}
		if first, dup := seen[r.Role]; dup {
			add(r.Line, "role %q is listed twice (first on line %d)", r.Role, first)
		}
		seen[r.Role] = r.Line
		for _, list := range [][]string{r.Read, r.Write} {
			for _, k := range list {
				if keys[k] == nil {
					add(r.Line, "role %q grants undefined key %q", r.Role, k)
				}
			}
		}
		switch r.OnDenied {
		case "", DeniedNull, DeniedMask, DeniedCiphertext, DeniedError:
		default:
			add(r.Line, "role %q: on_denied %q is not one of null, mask, ciphertext, error", r.Role, r.OnDenied)
		}
		if r.OnDenied == DeniedCiphertext {
			for _, k := range orderedKeysNotIn(keys, r.Read) {
				add(r.Line, "role %q: on_denied: ciphertext would show it ordered key %q's ciphertexts, whose byte order is the plaintext order; grant it read on %q or choose another on_denied", r.Role, k, k)
			}
		}
		if r.ServerSideCode != "" && r.ServerSideCode != AllowServerSideCode {
			add(r.Line, "role %q: server_side_code %q is not allow (leave it out to refuse)", r.Role, r.ServerSideCode)
		}
	}
	return ps
}

// orderedKeysNotIn returns the ordered keys missing from read, sorted.
func orderedKeysNotIn(keys map[string]*Key, read []string) []string {
	var out []string
	for name, k := range keys {
		if k.Kind == Ordered && !slices.Contains(read, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func oneOf(ps *Problems, field, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	*ps = append(*ps, Problem{Message: fmt.Sprintf("%s: %q is not one of %s", field, value, strings.Join(allowed, ", "))})
}

// splitQualified splits "schema.table". Names are as stored in the catalog;
// neither part may be empty.
func splitQualified(name string) (schema, table string, ok bool) {
	i := strings.IndexByte(name, '.')
	if i <= 0 || i == len(name)-1 || strings.IndexByte(name[i+1:], '.') >= 0 {
		return "", name, false
	}
	return name[:i], name[i+1:], true
}

// validateLifetimes checks the settings that bound sessions: their
// number, their idleness and the drain at shutdown.
func (s Server) validateLifetimes() Problems {
	var ps Problems
	add := func(format string, args ...any) {
		ps = append(ps, Problem{Message: fmt.Sprintf(format, args...)})
	}
	if s.MaxConnections < 0 {
		add("server.max_connections must be 0 (no limit) or more, got %d", s.MaxConnections)
	}
	if s.IdleTimeout != "" {
		if d, err := time.ParseDuration(s.IdleTimeout); err != nil || d < 0 {
			add("server.idle_timeout: %q is not a duration of 0 or more", s.IdleTimeout)
		}
	}
	if d, err := time.ParseDuration(s.DrainTimeout); err != nil || d < 0 {
		add("server.drain_timeout: %q is not a duration of 0 or more", s.DrainTimeout)
	}
	return ps
}

// validate checks the Vault settings; the rest is only required when Vault
// is the provider (or serves the grants).
func (a ServerAuth) validate() Problems {
	var ps Problems
	add := func(format string, args ...any) {
		ps = append(ps, Problem{Message: fmt.Sprintf(format, args...)})
	}
	oneOf(&ps, "server.auth.method", a.Method, AuthRelay, AuthSCRAM)
	if _, err := time.ParseDuration(a.CacheTTL); err != nil {
		add("server.auth.cache_ttl: %v", err)
	}
	file, query := a.VerifiersFile != "", a.Query.User != ""
	switch {
	case a.Method != AuthSCRAM && (file || query):
		add("server.auth: verifiers_file and query are used only with method scram")
	case a.Method == AuthSCRAM && file == query:
		add("server.auth.method scram needs exactly one of verifiers_file and query.user")
	case query && a.Query.PasswordEnv == "":
		add("server.auth.query.password_env is empty: name the environment variable holding %s's password", a.Query.User)
	case query && a.Query.Database == "":
		add("server.auth.query.database is empty: name the database where pgcloak auth install put the auth function")
	}
	return ps
}

func (v VaultKeystore) validate(provider bool) Problems {
	var ps Problems
	add := func(format string, args ...any) {
		ps = append(ps, Problem{Message: fmt.Sprintf(format, args...)})
	}
	for _, f := range []struct{ name, value string }{{"timeout", v.Timeout}, {"grants_interval", v.GrantsInterval}} {
		if d, err := time.ParseDuration(f.value); err != nil || d <= 0 {
			add("keystore.vault.%s: %q is not a positive duration", f.name, f.value)
		}
	}
	if !provider && v.GrantsPath == "" {
		return ps
	}
	if v.Address == "" {
		add("keystore.vault.address is empty")
	}
	if v.KVMount == "" || v.TransitMount == "" || v.KEK == "" || v.KVPath == "" {
		add("keystore.vault: kv_mount, kv_path, transit_mount and kek must all be set")
	}
	switch v.Auth {
	case "token":
		if v.TokenEnv == "" && v.TokenFile == "" {
			add("keystore.vault: auth token needs token_env or token_file")
		}
	case "approle":
		if v.AppRole.RoleID == "" && v.AppRole.RoleIDFile == "" {
			add("keystore.vault.approle: role_id or role_id_file is required")
		}
		if v.AppRole.SecretIDEnv == "" && v.AppRole.SecretIDFile == "" {
			add("keystore.vault.approle: secret_id_env or secret_id_file is required")
		}
	}
	return ps
}

// validate checks the audit settings whether or not an output is set, so
// that turning the trail on later does not reveal an old mistake.
func (a Audit) validate() Problems {
	var ps Problems
	add := func(format string, args ...any) {
		ps = append(ps, Problem{Message: fmt.Sprintf(format, args...)})
	}
	oneOf(&ps, "audit.on_full", a.OnFull, AuditBlock, AuditDrop)
	if a.MaxSizeMB <= 0 {
		add("audit.max_size_mb must be greater than 0, got %d", a.MaxSizeMB)
	}
	if a.MaxBackups < 0 {
		add("audit.max_backups must not be negative, got %d", a.MaxBackups)
	}
	if a.Buffer <= 0 {
		add("audit.buffer must be greater than 0, got %d", a.Buffer)
	}
	if _, _, err := a.RemoteSyslog(); err != nil {
		add("audit.output: %v", err)
	}
	return ps
}
