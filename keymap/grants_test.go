package keymap

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

func TestDecodeRoles(t *testing.T) {
	want := []policy.Role{{Role: "doctor", Read: []string{"ssn"}, Write: []string{"ssn"}}, {Role: "billing", Read: []string{"ssn"}, OnDenied: policy.DeniedMask}}
	tests := []struct {
		name string
		raw  any
		err  string
	}{
		{"JSON list as Vault returns it", []any{
			map[string]any{"role": "doctor", "read": []any{"ssn"}, "write": []any{"ssn"}},
			map[string]any{"role": "billing", "read": []any{"ssn"}, "on_denied": "mask"},
		}, ""},
		{"JSON in a string (vault kv put roles=…)", `[{"role":"doctor","read":["ssn"],"write":["ssn"]},{"role":"billing","read":["ssn"],"on_denied":"mask"}]`, ""},
		{"unknown field", []any{map[string]any{"role": "doctor", "reed": []any{"ssn"}}}, `unknown field "reed"`},
		{"not a list", map[string]any{"role": "doctor"}, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRoles(tt.raw)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}
