package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse decodes a configuration file strictly over Defaults: an unknown or
// misspelt field anywhere is a problem naming its line. It does not validate
// cross-references; call Validate for that (Load does both).
func Parse(data []byte) (*Config, error) {
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlProblems(err)
	}
	return &cfg, nil
}

// Load parses and validates a configuration file.
func Load(data []byte) (*Config, error) {
	cfg, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if ps := cfg.Validate(); len(ps) > 0 {
		return nil, ps
	}
	return cfg, nil
}

var (
	yamlLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
	yamlNotFound = regexp.MustCompile(`^field (\S+) not found in type policy\.(\w+)$`)
)

// sectionOf names, as the file spells it, the section a Go type decodes.
var sectionOf = map[string]string{
	"Config":        "the top level",
	"Server":        "server",
	"ServerTLS":     "server.tls",
	"ServerAuth":    "server.auth",
	"AuthQuery":     "server.auth.query",
	"Upstream":      "upstream",
	"UpstreamTLS":   "upstream.tls",
	"Keystore":      "keystore",
	"LocalKeystore": "keystore.local",
	"VaultKeystore": "keystore.vault",
	"VaultAppRole":  "keystore.vault.approle",
	"Audit":         "audit",
	"Policy":        "policy",
}

// yamlProblems turns a yaml.v3 error into Problems that speak of the file,
// not of Go types.
func yamlProblems(err error) error {
	var ps Problems
	var terr *yaml.TypeError
	switch {
	case errors.As(err, &ps):
		return ps
	case errors.As(err, &terr):
		for _, e := range terr.Errors {
			ps = append(ps, yamlProblem(e))
		}
		return ps.sorted()
	default:
		return Problems{yamlProblem(strings.TrimPrefix(err.Error(), "yaml: "))}
	}
}

func yamlProblem(msg string) Problem {
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Message: msg}
	}
	line, _ := strconv.Atoi(m[1])
	text := m[2]
	if nf := yamlNotFound.FindStringSubmatch(text); nf != nil {
		text = fmt.Sprintf("unknown field %q in %s", nf[1], sectionOf[nf[2]])
	}
	return Problem{Line: line, Message: text}
}

// checkFields reports the first mapping key of node that is not allowed.
func checkFields(node *yaml.Node, what string, allowed ...string) error {
	if node.Kind != yaml.MappingNode {
		return Problems{{Line: node.Line, Message: fmt.Sprintf("%s must be a mapping", what)}}
	}
	var ps Problems
	for i := 0; i+1 < len(node.Content); i += 2 {
		k := node.Content[i]
		known := false
		for _, a := range allowed {
			if k.Value == a {
				known = true
				break
			}
		}
		if !known {
			ps = append(ps, Problem{Line: k.Line, Message: fmt.Sprintf(
				"unknown field %q in %s (allowed: %s)", k.Value, what, strings.Join(allowed, ", "))})
		}
	}
	if len(ps) > 0 {
		return ps
	}
	return nil
}

// UnmarshalYAML decodes a key entry strictly and records its line.
func (k *Key) UnmarshalYAML(node *yaml.Node) error {
	if err := checkFields(node, "a policy.keys entry", "name", "kind"); err != nil {
		return err
	}
	type plain Key
	if err := node.Decode((*plain)(k)); err != nil {
		return err
	}
	k.Line = node.Line
	return nil
}

// UnmarshalYAML decodes a column entry strictly and records its line.
func (c *Column) UnmarshalYAML(node *yaml.Node) error {
	if err := checkFields(node, "a policy.columns entry", "table", "column", "key", "type"); err != nil {
		return err
	}
	type plain Column
	if err := node.Decode((*plain)(c)); err != nil {
		return err
	}
	if t, ok := ParseLogicalType(string(c.Type)); ok {
		c.Type = t
	}
	c.Line = node.Line
	return nil
}

// UnmarshalYAML decodes a role entry strictly and records its line.
func (r *Role) UnmarshalYAML(node *yaml.Node) error {
	if err := checkFields(node, "a policy.roles entry", "role", "read", "write", "on_denied", "server_side_code"); err != nil {
		return err
	}
	type plain Role
	if err := node.Decode((*plain)(r)); err != nil {
		return err
	}
	r.Line = node.Line
	return nil
}
