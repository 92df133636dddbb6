package pglocal

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tests that need a running server (and so the skip rule of PGCLOAK_TEST_REQUIRE) are in
// testenv, which re-exports Start as StartLocalServer: this package cannot import testenv.

func TestStartRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string]Options{
		"conf key":   {ExtraConf: map[string]string{"work_mem = 1\nfsync": "on"}},
		"conf value": {ExtraConf: map[string]string{"work_mem": "1MB\nfsync = on"}},
		"hba line":   {HBA: []string{"local all all trust\nhost all all 0.0.0.0/0 trust"}},
		"port":       {Port: 70000},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Start(context.Background(), opts); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestStartRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "precious")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(context.Background(), Options{Dir: dir}); err == nil {
		t.Fatal("started in a non-empty dir, which Stop would remove")
	}
	// Without server binaries Start fails before it looks at the dir; the check itself:
	if _, err := makeServerDir(dir, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("makeServerDir of a non-empty dir: err = %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("failed start touched the dir: %v", err)
	}
}

func TestHBAOrder(t *testing.T) {
	lines := hbaLines([]string{"host all x 127.0.0.1/32 reject"}, true)
	index := func(want string) int {
		for i, l := range lines {
			if l == want {
				return i
			}
		}
		t.Fatalf("no line %q in\n%s", want, strings.Join(lines, "\n"))
		return -1
	}
	extra := index("host all x 127.0.0.1/32 reject")
	md5 := index("host all pgcloak_md5 127.0.0.1/32 md5")
	index("local all pgcloak_password password")
	scram := index("hostssl all pgcloak_scram 127.0.0.1/32 scram-sha-256")
	trust := index("host all all 127.0.0.1/32 trust")
	index("hostssl all all ::1/128 trust")
	if !(extra < md5 && md5 < scram && scram < trust) {
		t.Fatalf("wrong order (first match wins):\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range hbaLines(nil, false) {
		if strings.HasPrefix(l, "hostssl") {
			t.Fatalf("hostssl line %q without TLS", l)
		}
	}
}

func TestRenderConfQuotes(t *testing.T) {
	got := renderConf([]confSetting{{"application_name", `it's a\b`}})
	if !strings.Contains(got, `application_name = 'it''s a\\b'`) {
		t.Fatalf("got %q", got)
	}
}

func TestFindBinDirHonoursEnv(t *testing.T) {
	t.Setenv(EnvBinDir, t.TempDir())
	if _, err := FindBinDir(context.Background()); err == nil || !strings.Contains(err.Error(), EnvBinDir) {
		t.Fatalf("err = %v, want a complaint about %s", err, EnvBinDir)
	}
}

func TestNewestVersionDir(t *testing.T) {
	got := newestVersionDir([]string{"/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/10/bin"})
	if got != "/usr/lib/postgresql/15/bin" {
		t.Fatalf("got %s", got)
	}
}
