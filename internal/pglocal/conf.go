package pglocal

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The login roles whose pg_hba.conf lines make a local server ask for a password with one
// particular method, so the proxy's tests can exercise each. pglocal writes only these
// lines; the tests create the roles (with passwords) themselves. For real md5 the role's
// password must be stored as md5 (SET password_encryption = 'md5' before CREATE ROLE);
// PostgreSQL upgrades "md5" to SCRAM for a SCRAM-stored password.
const (
	RoleMD5      = "pgcloak_md5"
	RolePassword = "pgcloak_password"
	RoleSCRAM    = "pgcloak_scram"
)

var passwordRoles = []struct{ role, method string }{
	{RoleMD5, "md5"},
	{RolePassword, "password"},
	{RoleSCRAM, "scram-sha-256"},
}

// loopbacks are the addresses host lines cover; the server listens on 127.0.0.1 only, ::1
// is there for a listen_addresses overridden through ExtraConf.
var loopbacks = []string{"127.0.0.1/32", "::1/128"}

// hbaLines builds pg_hba.conf. PostgreSQL uses the first line that matches, so the order
// is the contract: the caller's lines, then the password methods of the pgcloak_* roles,
// then trust for everyone else.
func hbaLines(extra []string, tls bool) []string {
	lines := []string{"# pglocal: lines of Options.HBA"}
	lines = append(lines, extra...)
	lines = append(lines, "# pglocal: one password method per pgcloak_* role")
	for _, r := range passwordRoles {
		lines = append(lines, hbaFor(r.role, r.method, tls)...)
	}
	lines = append(lines, "# pglocal: everyone else")
	return append(lines, hbaFor("all", "trust", tls)...)
}

// hbaFor gives role the method on the unix socket and on loopback TCP. The hostssl lines
// precede the host lines only to document that TLS connections are covered; host matches
// both.
func hbaFor(role, method string, tls bool) []string {
	lines := []string{fmt.Sprintf("local all %s %s", role, method)}
	types := []string{"host"}
	if tls {
		// Without ssl=on PostgreSQL warns that a hostssl line can never match.
		types = []string{"hostssl", "host"}
	}
	for _, typ := range types {
		for _, addr := range loopbacks {
			lines = append(lines, fmt.Sprintf("%s all %s %s %s", typ, role, addr, method))
		}
	}
	return lines
}

// confSetting is one postgresql.conf line.
type confSetting struct{ key, value string }

var confKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// serverConf lists the settings appended to initdb's postgresql.conf; later lines win, so
// opts.ExtraConf (sorted, for a reproducible file) can override any default here.
func serverConf(opts Options, socketDir string) []confSetting {
	conf := []confSetting{
		{"listen_addresses", "127.0.0.1"},
		{"unix_socket_directories", socketDir},
		// Test data is disposable: durability only costs time.
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
		{"max_connections", "200"},
		// The server's stderr is the log file (see Server.LogPath).
		{"logging_collector", "off"},
		{"log_destination", "stderr"},
		{"log_line_prefix", "%m [%p] %q%u@%d "},
	}
	if opts.LogStatements {
		conf = append(conf, confSetting{"log_statement", "all"})
	}
	if opts.TLS {
		conf = append(conf,
			confSetting{"ssl", "on"},
			confSetting{"ssl_cert_file", serverCertName},
			confSetting{"ssl_key_file", serverKeyName})
	}
	for _, k := range slices.Sorted(maps.Keys(opts.ExtraConf)) {
		conf = append(conf, confSetting{k, opts.ExtraConf[k]})
	}
	return conf
}

// renderConf writes settings as postgresql.conf lines, quoting every value so paths and
// lists need no special casing.
func renderConf(conf []confSetting) string {
	var b strings.Builder
	b.WriteString("\n# pglocal\n")
	for _, s := range conf {
		v := strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s.value)
		fmt.Fprintf(&b, "%s = '%s'\n", s.key, v)
	}
	return b.String()
}

// validateOptions rejects what would corrupt the config files: a line break in a value or
// an HBA line would smuggle in further lines, a malformed key would stop the server with an
// error far from its cause.
func validateOptions(opts Options) error {
	for k, v := range opts.ExtraConf {
		if !confKey.MatchString(k) {
			return fmt.Errorf("ExtraConf: invalid setting name %q", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("ExtraConf: value of %s contains a line break", k)
		}
	}
	for _, line := range opts.HBA {
		if strings.ContainsAny(line, "\r\n\x00") {
			return fmt.Errorf("HBA: line %q contains a line break", line)
		}
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return fmt.Errorf("port %d out of range", opts.Port)
	}
	return nil
}
