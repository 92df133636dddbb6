package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgcloak/pgcloak/testenv"
)

// asCLI makes the test binary run pgcloak's main instead of the tests, so
// that tests can run `pgcloak serve` as a process of its own and signal it.
const asCLI = "PGCLOAK_TEST_AS_CLI"

// process is a `pgcloak serve` run by startProcess.
type process struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string // the proxy's listener
	ops     string // server.metrics_listen
	mu      sync.Mutex
	log     strings.Builder
	logged  chan struct{} // signalled on each log line
	exited  chan struct{}
	exitErr error
}

// freeAddr is a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs `pgcloak serve --config path args…` with the proxy
// and its ops endpoints on free loopback ports, and waits until it
// accepts connections.
func startProcess(t *testing.T, path string, env []string, args ...string) *process {
	t.Helper()
	return startProcessTo(t, nil, path, env, args...)
}

// startProcessTo is startProcess with the process's stdout going to
// stdout (nil: discarded).
func startProcessTo(t *testing.T, stdout io.Writer, path string, env []string, args ...string) *process {
	t.Helper()
	p := &process{t: t, addr: freeAddr(t), ops: freeAddr(t), logged: make(chan struct{}, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], append([]string{"serve", "--config", path}, args...)...)
	p.cmd.Env = append(os.Environ(), append(env, asCLI+"=1",
		"PGCLOAK_SERVER_LISTEN="+p.addr, "PGCLOAK_SERVER_METRICS_LISTEN="+p.ops)...)
	p.cmd.Stdout = stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.collect(stderr)
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("pgcloak serve's log:\n%s", p.logText())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", p.addr); err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("pgcloak serve exited at start: %v\n%s", p.exitErr, p.logText())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgcloak serve never listened\n%s", p.logText())
		}
	}
}

func (p *process) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.log.WriteString(sc.Text() + "\n")
		p.mu.Unlock()
		select {
		case p.logged <- struct{}{}:
		default:
		}
	}
	p.exitErr = p.cmd.Wait()
	close(p.exited)
}

func (p *process) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLog waits until the log holds want n times in all.
func (p *process) waitLog(want string, n int) {
	p.t.Helper()
	deadline := time.After(20 * time.Second)
	for strings.Count(p.logText(), want) < n {
		select {
		case <-p.logged:
		case <-deadline:
			p.t.Fatalf("pgcloak serve never logged %q (%d times); log:\n%s", want, n, p.logText())
		}
	}
}

func (p *process) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// connect opens a session through the process as user.
func (p *process) connect(ctx context.Context, user, database string) *pgx.Conn {
	p.t.Helper()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", user, p.addr, database))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// get fetches an ops endpoint: its status and body.
func (p *process) get(path string) (int, string) {
	p.t.Helper()
	resp, err := http.Get("http://" + p.ops + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metric is the sum of the samples of a metric family in /metrics whose
// labels contain every one of labels (`outcome="ok"`), or -1 without any.
func (p *process) metric(name string, labels ...string) float64 {
	p.t.Helper()
	_, body := p.get("/metrics")
	return sampleSum(body, name, labels...)
}

func sampleSum(exposition, name string, labels ...string) float64 {
	sum, found := 0.0, false
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// createKeys creates every key of the config at path.
func createKeys(t *testing.T, path string) {
	t.Helper()
	if out, err := runCLI(t, nil, "keys", "create", "--all", "--config", path); err != nil {
		t.Fatalf("keys create: %v\n%s", err, out)
	}
}

// patientsWithKeys is a test database with table patients and a config
// (writeConfig) for it whose keys are created.
func patientsWithKeys(t *testing.T) (*testenv.PG, string) {
	t.Helper()
	pg := testenv.Postgres(t)
	pg.ExecAdmin(t, "CREATE TABLE public.patients (id serial, name text, ssn bytea, diagnosis bytea)")
	path := writeConfig(t, pg.Address())
	createKeys(t, path)
	return pg, path
}
