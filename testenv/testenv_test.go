package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestPostgresGivesWorkingDatabase(t *testing.T) {
	start := time.Now()
	pg := Postgres(t)
	t.Logf("source %s, Postgres(t) took %s", pg.Source, time.Since(start))
	conn := pg.Connect(t)
	var db string
	var sum int
	if err := conn.QueryRow(context.Background(), "SELECT current_database(), 1 + 1").Scan(&db, &sum); err != nil {
		t.Fatal(err)
	}
	if db != pg.Database || sum != 2 {
		t.Fatalf("got database %q and 1+1=%d, want %q and 2", db, sum, pg.Database)
	}
	assertEmpty(t, conn)
}

// assertEmpty checks that the database has no user tables: "fresh, empty".
func assertEmpty(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	var n int
	q := "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("fresh database has %d user relations", n)
	}
}

func TestDatabasesAreIsolated(t *testing.T) {
	a, b := Postgres(t), Postgres(t)
	if a.Database == b.Database {
		t.Fatalf("both calls gave database %q", a.Database)
	}
	a.ExecAdmin(t, "CREATE TABLE only_in_a (id int); INSERT INTO only_in_a VALUES (1)")
	if !hasTable(t, a, "only_in_a") {
		t.Fatal("table created in a is missing from a")
	}
	if hasTable(t, b, "only_in_a") {
		t.Fatal("table created in a is visible in b")
	}
}

func hasTable(t *testing.T, pg *PG, name string) bool {
	t.Helper()
	var found bool
	err := pg.Connect(t).QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", name).Scan(&found)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestParallelTestsGetTheirOwnDatabases(t *testing.T) {
	names := make(chan string, 4)
	t.Run("group", func(t *testing.T) {
		for i := range cap(names) {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				pg := Postgres(t)
				var db string
				if err := pg.Connect(t).QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil {
					t.Fatal(err)
				}
				names <- db
			})
		}
	})
	close(names)
	seen := map[string]bool{}
	for n := range names {
		if seen[n] {
			t.Fatalf("database %s handed out twice", n)
		}
		seen[n] = true
	}
	if len(seen) != cap(names) {
		t.Fatalf("got %d databases from %d parallel tests", len(seen), cap(names))
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	var name string
	t.Run("user", func(t *testing.T) {
		pg := Postgres(t)
		name = pg.Database
		pg.Connect(t) // an open session must not keep the database alive
	})
	if name == "" {
		t.Skip("subtest got no database")
	}
	var exists bool
	err := Postgres(t).Connect(t).QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test's cleanup", name)
	}
}

func TestStatementLogHasStatements(t *testing.T) {
	pg := Postgres(t)
	if pg.StatementLogPath == "" {
		// What StatementLog does then is TestStatementLogUnavailableWithoutPath's subject.
		t.Skipf("source %s keeps no statement log", pg.Source)
	}
	marker := "statement_log_marker_" + strings.TrimPrefix(uniqueDBName(""), "t__")
	pg.ExecAdmin(t, fmt.Sprintf("SELECT '%s'", marker))
	log := pg.AwaitStatement(t, marker)
	if !regexp.MustCompile(`statement: SELECT '` + marker + `'`).MatchString(log) {
		t.Fatalf("log has the marker but not as a logged statement:\n%s", log)
	}
	if strings.Contains(pg.StatementLog(t), marker+"_never_ran") {
		t.Fatal("statement log contains a statement that never ran")
	}
}

func TestLocalServerHasTLS(t *testing.T) {
	pg := Postgres(t)
	if pg.Source != SourceLocal {
		t.Skipf("source %s: TLS is guaranteed for local servers only", pg.Source)
	}
	if !pg.TLS || pg.CACertFile == "" {
		t.Fatalf("TLS=%v CACertFile=%q, want TLS with a CA", pg.TLS, pg.CACertFile)
	}
	dsn := strings.Replace(pg.DSN(), "sslmode=disable", "sslmode=verify-full&sslrootcert="+pg.CACertFile, 1)
	conn := connect(t, dsn)
	defer conn.Close(context.Background())
	var ssl bool
	if err := conn.QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Fatal("verify-full connection is not using TLS")
	}
}

func TestLocalServerPasswordRoles(t *testing.T) {
	pg := Postgres(t)
	if pg.Source != SourceLocal {
		t.Skipf("source %s: pg_hba.conf is testenv's for local servers only", pg.Source)
	}
	for _, r := range []struct{ role, method string }{
		{RoleMD5, "md5"},
		{RolePassword, "password"},
		{RoleSCRAM, "scram-sha-256"},
	} {
		t.Run(r.method, func(t *testing.T) {
			encryption := "scram-sha-256"
			if r.method == "md5" {
				encryption = "md5"
			}
			pg.ExecAdmin(t, fmt.Sprintf("SET password_encryption = '%s'; CREATE ROLE %s LOGIN PASSWORD 'right'", encryption, r.role))
			t.Cleanup(func() { pg.ExecAdmin(t, "DROP ROLE "+r.role) })
			if _, err := tryConnect(pg, r.role, "wrong"); err == nil {
				t.Fatalf("%s logged in with a wrong password: pg_hba.conf trusts it", r.role)
			}
			user, err := tryConnect(pg, r.role, "right")
			if err != nil {
				t.Fatalf("%s with the right password: %v", r.role, err)
			}
			if user != r.role {
				t.Fatalf("logged in as %s, session user is %s", r.role, user)
			}
		})
	}
}

// tryConnect logs in as role with password and returns the session's user.
func tryConnect(pg *PG, role, password string) (string, error) {
	as := *pg
	as.Superuser, as.Password = role, password
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, as.DSN())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var user string
	err = conn.QueryRow(ctx, "SELECT current_user").Scan(&user)
	return user, err
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestStartLocalServerOptionsAndStop(t *testing.T) {
	if _, err := FindBinDir(context.Background()); err != nil {
		unavailable(t, "%v", err)
	}
	ls, err := StartLocalServer(context.Background(), LocalServerOptions{
		HBA:       []string{"host all blocked 127.0.0.1/32 reject"},
		ExtraConf: map[string]string{"work_mem": "7MB", "application_name": "it's quoted"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ls.Stop() })
	assertOptionsApplied(t, ls)
	if len(serverProcesses(t, ls.DataDir)) == 0 {
		t.Fatal("found no process of the running server; the leftover check below would prove nothing")
	}
	if err := ls.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, ls)
	if err := ls.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func assertOptionsApplied(t *testing.T, ls *LocalServer) {
	t.Helper()
	conn := connect(t, ls.DSN("postgres"))
	defer conn.Close(context.Background())
	var workMem, appName string
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('work_mem'), current_setting('application_name')").Scan(&workMem, &appName); err != nil {
		t.Fatal(err)
	}
	if workMem != "7MB" {
		t.Errorf("work_mem = %q, want ExtraConf's 7MB", workMem)
	}
	if _, err := conn.Exec(context.Background(), "CREATE ROLE blocked LOGIN"); err != nil {
		t.Fatal(err)
	}
	blockedDSN := strings.Replace(ls.DSN("postgres"), "postgres@", "blocked@", 1)
	_, err := pgx.Connect(context.Background(), blockedDSN)
	if err == nil || !strings.Contains(err.Error(), "pg_hba.conf rejects") {
		t.Errorf("role blocked: err = %v, want the HBA option's reject before the default trust", err)
	}
	if ls.CACertFile != "" {
		t.Errorf("CACertFile = %q without TLS", ls.CACertFile)
	}
}

func assertGone(t *testing.T, ls *LocalServer) {
	t.Helper()
	if _, err := os.Stat(ls.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after Stop (stat: %v)", ls.Dir, err)
	}
	if pids := serverProcesses(t, ls.DataDir); len(pids) > 0 {
		t.Errorf("processes %v still run after Stop", pids)
	}
}

// serverProcesses lists the processes whose command line names dataDir: the postmaster
// (postgres -D dataDir). Backends rename themselves, so the group is checked too.
func serverProcesses(t *testing.T, dataDir string) []string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("process check reads /proc")
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []string
	for _, path := range cmdlines {
		data, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(data), dataDir) {
			pids = append(pids, filepath.Base(filepath.Dir(path)))
		}
	}
	return pids
}

func TestStartLocalServerStopsWhenContextEnds(t *testing.T) {
	if _, err := FindBinDir(context.Background()); err != nil {
		unavailable(t, "%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ls, err := StartLocalServer(ctx, LocalServerOptions{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ls.Stop() })
	for _, f := range []string{ls.CACertFile, filepath.Join(ls.DataDir, "server.key")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("TLS file: %v", err)
		}
	}
	cancel()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(ls.Dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there 30s after the context ended", ls.Dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	assertGone(t, ls)
}

func TestUniqueDBName(t *testing.T) {
	long := strings.Repeat("TestSomething/with spaces-and-ÜNICODE/", 5)
	a, b := uniqueDBName(long), uniqueDBName(long)
	if a == b {
		t.Fatalf("two calls gave %q", a)
	}
	valid := regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	for _, n := range []string{a, b, uniqueDBName("")} {
		if len(n) > 63 || !valid.MatchString(n) {
			t.Errorf("%q: not a valid unquoted identifier of at most 63 bytes", n)
		}
	}
	if !strings.HasPrefix(a, "t_testsomething_with_spaces") {
		t.Errorf("%q does not start with the readable test name", a)
	}
}

func TestDockerProbeFailsFast(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil { // exists, but nobody listens
		t.Fatal(err)
	}
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	if !containsEndpoint(dockerEndpoints(), "unix", sock) {
		t.Fatalf("DOCKER_HOST %s not among %v", sock, dockerEndpoints())
	}
	if probeDocker() == nil {
		t.Skip("a Docker engine answers on this machine")
	}
	// The probe must give up by itself rather than hang: bound it with a
	// context far longer than its own dial timeout and check it returned
	// its own error, not the context's.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := dockerSource(ctx)
	if err == nil {
		t.Fatal("docker source succeeded without an engine")
	}
	if ctx.Err() != nil {
		t.Fatalf("docker source only gave up when the context ended: %v", err)
	}
}

func containsEndpoint(eps []dockerEndpoint, network, address string) bool {
	for _, ep := range eps {
		if ep.network == network && ep.address == address {
			return true
		}
	}
	return false
}

func TestAcquireReportsEveryReason(t *testing.T) {
	srv, reasons := acquire(context.Background(), sourceConfig{dsn: "postgres://nobody@127.0.0.1:1/x?connect_timeout=1"})
	if srv != nil {
		t.Fatal("got a server from an unreachable DSN")
	}
	if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "env: ") {
		t.Fatalf("reasons = %q, want the env failure alone (a set DSN is final)", reasons)
	}
	_, reasons = acquire(context.Background(), sourceConfig{only: "bogus"})
	if len(reasons) != 1 || !strings.Contains(reasons[0], "bogus") {
		t.Fatalf("reasons = %q, want the invalid %s named", reasons, EnvSource)
	}
}

func TestAcquireSkipsUnselectedSources(t *testing.T) {
	srcs := sources(sourceConfig{dsn: "postgres://x@h/db", only: SourceLocal})
	for _, s := range srcs {
		if (s.notConfigured == "") != (s.name == SourceLocal) {
			t.Errorf("source %s: notConfigured = %q", s.name, s.notConfigured)
		}
	}
}

// recordingTB stands in for a test to observe Skipf/Fatalf without ending the real test.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recordingTB) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestUnavailableSkipsUnlessRequired(t *testing.T) {
	t.Setenv(EnvRequire, "")
	rec := &recordingTB{TB: t}
	unavailable(rec, "because %s", "reasons")
	if rec.failed != "" || !strings.Contains(rec.skipped, "because reasons") {
		t.Fatalf("not required: skipped %q, failed %q", rec.skipped, rec.failed)
	}
	t.Setenv(EnvRequire, "1")
	rec = &recordingTB{TB: t}
	unavailable(rec, "because %s", "reasons")
	if rec.skipped != "" || !strings.Contains(rec.failed, "because reasons") {
		t.Fatalf("required: skipped %q, failed %q", rec.skipped, rec.failed)
	}
}

func TestStatementLogUnavailableWithoutPath(t *testing.T) {
	t.Setenv(EnvRequire, "1")
	rec := &recordingTB{TB: t}
	(&PG{Source: SourceDocker}).StatementLog(rec)
	if !strings.Contains(rec.failed, "no statement log") {
		t.Fatalf("failed %q, want a required-run failure", rec.failed)
	}
}

// TestReleaseBinaryCarriesNoTestMachinery checks what `go version -m` of a built pgcloak
// would list: `pgcloak demo` gets its server from internal/pglocal, so neither this package
// nor what it links for Docker may reach the binary.
func TestReleaseBinaryCarriesNoTestMachinery(t *testing.T) {
	goCmd, err := findGo()
	if err != nil {
		unavailable(t, "%v", err)
	}
	out, err := exec.Command(goCmd, "list", "-deps",
		"-f", "{{.ImportPath}} {{with .Module}}{{.Path}}{{end}}",
		"github.com/pgcloak/pgcloak/cmd/pgcloak").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	banned := regexp.MustCompile(`(?i)testcontainers|docker|moby|^testing$|/testenv$`)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		for _, field := range strings.Fields(line) {
			if banned.MatchString(field) {
				t.Errorf("cmd/pgcloak links %s", line)
				break
			}
		}
	}
}
