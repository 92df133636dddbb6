package pglocal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/internal/localca"
	"github.com/pgcloak/pgcloak/internal/procgroup"
)

const (
	localHost      = "127.0.0.1"
	localSuperuser = "postgres"
	// defaultOSUser runs the server when we are root: initdb and postgres refuse root.
	defaultOSUser = "postgres"
	// tempDirPrefix names temp dirs "pgcloak-pg-<pid>-…" so a later run can tell which
	// ones a dead process left behind (see sweepStaleDirs).
	tempDirPrefix = "pgcloak-pg-"

	serverCertName = "server.crt"
	serverKeyName  = "server.key"

	initdbTimeout = 2 * time.Minute
	readyTimeout  = time.Minute
	// portAttempts covers the race between picking a free port and the server binding it.
	portAttempts = 3
	// maxSocketPath is the room for a unix socket path (sun_path) on Linux, less its NUL.
	maxSocketPath = 107
)

// errPortInUse marks a start that failed only because another process took the port.
var errPortInUse = errors.New("port already in use")

// Options configures Start. The zero value is a plain server on a free port in a temp dir.
type Options struct {
	BinDir        string            // server binaries; "" = FindBinDir
	Dir           string            // "" = a new temp dir; else must be absent or empty (Stop removes it)
	Port          int               // 0 = a free port on 127.0.0.1
	LogStatements bool              // log_statement=all into LogPath
	TLS           bool              // ssl=on with a generated CA and server certificate
	ExtraConf     map[string]string // postgresql.conf settings, applied last
	HBA           []string          // pg_hba.conf lines placed before the defaults
	OSUser        string            // when running as root, the OS user running the server; "" = "postgres"
}

// Server is a PostgreSQL server run from this machine's binaries in a directory of its
// own. The superuser logs in with trust; see hbaLines for the rest of pg_hba.conf.
type Server struct {
	Host       string // 127.0.0.1
	Port       int
	Superuser  string // "postgres", no password (trust)
	Dir        string // holds everything below; removed by Stop
	DataDir    string
	SocketDir  string // unix_socket_directories
	LogPath    string // the server's stderr: its log, with every statement when LogStatements
	CACertFile string // the CA that signed the server certificate; "" without TLS
	BinDir     string

	proc   *exec.Cmd
	exited chan struct{} // closed once proc is reaped

	mu       sync.Mutex
	unwatch  func() bool // detaches Stop from the start context
	stopOnce sync.Once
	stopErr  error
}

// Start initialises a cluster and starts it, returning once it accepts connections. ctx
// bounds the start and the server's life, as with exec.CommandContext: when ctx is done the
// server is stopped (Stop). Any failure leaves no process and no directory behind.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := validateOptions(opts); err != nil {
		return nil, err
	}
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = FindBinDir(ctx); err != nil {
			return nil, err
		}
	} else if err := checkBinDir(binDir); err != nil {
		return nil, err
	}
	runAs, err := serverUser(opts.OSUser)
	if err != nil {
		return nil, err
	}
	dir, err := makeServerDir(opts.Dir, runAs)
	if err != nil {
		return nil, err
	}
	s := newServer(dir, binDir, opts.TLS)
	if err := s.start(ctx, opts, runAs); err != nil {
		return nil, errors.Join(err, s.Stop())
	}
	s.mu.Lock()
	s.unwatch = context.AfterFunc(ctx, func() { _ = s.Stop() })
	s.mu.Unlock()
	return s, nil
}

func newServer(dir, binDir string, tls bool) *Server {
	s := &Server{
		Host:      localHost,
		Superuser: localSuperuser,
		Dir:       dir,
		DataDir:   filepath.Join(dir, "data"),
		SocketDir: filepath.Join(dir, "sock"),
		LogPath:   filepath.Join(dir, "postgres.log"),
		BinDir:    binDir,
	}
	if tls {
		s.CACertFile = filepath.Join(dir, "ca.crt")
	}
	return s
}

func (s *Server) start(ctx context.Context, opts Options, runAs *procgroup.User) error {
	if err := s.initCluster(ctx, runAs); err != nil {
		return err
	}
	if err := s.configure(opts); err != nil {
		return err
	}
	// Everything we wrote must belong to the server's user: it refuses a key it doesn't own.
	if err := chownTree(s.Dir, runAs); err != nil {
		return err
	}
	return s.launch(ctx, opts.Port, runAs)
}

// DSN is a superuser connection string (trust, no TLS) to database on this server.
func (s *Server) DSN(database string) string {
	return (&url.URL{
		Scheme:   "postgres",
		User:     url.User(s.Superuser),
		Host:     net.JoinHostPort(s.Host, strconv.Itoa(s.Port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}).String()
}

// Stop shuts the server down (fast: open transactions roll back) and removes Dir. It is
// idempotent and safe to call concurrently; every call returns the first call's result.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		if s.unwatch != nil {
			s.unwatch()
		}
		s.mu.Unlock()
		s.stopErr = errors.Join(s.terminate(), os.RemoveAll(s.Dir))
	})
	return s.stopErr
}

// serverUser is the OS user the server runs as: nil (ourselves) unless we are root, who
// initdb and postgres refuse; then name, or "postgres".
func serverUser(name string) (*procgroup.User, error) {
	if !procgroup.RunningAsRoot() {
		return nil, nil
	}
	if name == "" {
		name = defaultOSUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs another OS user: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	return &procgroup.User{UID: uid, GID: gid}, nil
}

func chownTree(dir string, u *procgroup.User) error {
	if u == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, u.UID, u.GID)
	})
}

// makeServerDir creates the server's directory, 0755 so that the server's user reaches the
// socket and data dirs below it even when we are root.
func makeServerDir(dir string, u *procgroup.User) (string, error) {
	if dir == "" {
		return makeTempServerDir(u)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	// Stop removes the directory, so it must not hold anything we did not create.
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) > 0 {
		return "", fmt.Errorf("%s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, finishServerDir(dir, u)
}

func makeTempServerDir(u *procgroup.User) (string, error) {
	sweepStaleDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", tempDirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	if err := finishServerDir(dir, u); err != nil {
		return "", errors.Join(err, os.RemoveAll(dir))
	}
	return dir, nil
}

func finishServerDir(dir string, u *procgroup.User) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if err := checkTraversable(dir, u); err != nil {
		return err
	}
	if n := len(filepath.Join(dir, "sock", ".s.PGSQL.65535")); n > maxSocketPath {
		return fmt.Errorf("%s is too deep for a unix socket path (%d > %d bytes); set TMPDIR to a shorter dir", dir, n, maxSocketPath)
	}
	return nil
}

// checkTraversable fails early, with the cause, when the server's user could not reach dir
// (a TMPDIR under /root, say); initdb would otherwise fail with a bare "permission denied".
func checkTraversable(dir string, u *procgroup.User) error {
	if u == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by others, so PostgreSQL's OS user cannot reach %s; set TMPDIR or Dir elsewhere", p, dir)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// sweepStaleDirs removes the temp dirs of processes (test binaries, demos) that died
// without stopping their server (a timeout's panic, SIGKILL): Pdeathsig killed the server,
// nobody removed the dir.
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempDirPrefix+"*"))
	for _, dir := range dirs {
		pid := ownerPID(filepath.Base(dir))
		if pid <= 0 || pid == os.Getpid() || procgroup.ProcessExists(pid) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

func ownerPID(base string) int {
	rest, ok := strings.CutPrefix(base, tempDirPrefix)
	if !ok {
		return 0
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		return 0
	}
	return pid
}

func (s *Server) initCluster(ctx context.Context, u *procgroup.User) error {
	for _, d := range []string{s.DataDir, s.SocketDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if err := os.Chmod(s.SocketDir, 0o755); err != nil {
		return err
	}
	if err := chownTree(s.Dir, u); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, initdbTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, "initdb"),
		"-D", s.DataDir, "-U", s.Superuser, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	s.prepare(cmd, u)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, procgroup.OutputTail(out))
	}
	return nil
}

// prepare sets what initdb and postgres share: the user, our own process group, a cwd the
// user can enter, and an environment without PG* variables that could redirect them.
func (s *Server) prepare(cmd *exec.Cmd, u *procgroup.User) {
	cmd.Dir = s.Dir
	cmd.SysProcAttr = procgroup.SysProcAttr(u)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "LC_ALL=C")
}

func (s *Server) configure(opts Options) error {
	if opts.TLS {
		err := localca.Write(localca.Files{
			CACert:     s.CACertFile,
			ServerCert: filepath.Join(s.DataDir, serverCertName),
			ServerKey:  filepath.Join(s.DataDir, serverKeyName),
		})
		if err != nil {
			return fmt.Errorf("TLS files: %w", err)
		}
	}
	conf := renderConf(serverConf(opts, s.SocketDir))
	if err := appendFile(filepath.Join(s.DataDir, "postgresql.conf"), conf); err != nil {
		return err
	}
	hba := strings.Join(hbaLines(opts.HBA, opts.TLS), "\n") + "\n"
	return os.WriteFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(hba), 0o600)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

// launch starts the server, retrying with another free port when one it picked was taken
// in the meantime.
func (s *Server) launch(ctx context.Context, port int, u *procgroup.User) error {
	attempts := 1
	if port == 0 {
		attempts = portAttempts
	}
	var err error
	for range attempts {
		s.Port = port
		if port == 0 {
			if s.Port, err = procgroup.FreeLocalPort(); err != nil {
				return err
			}
		}
		if err = s.run(ctx, u); err == nil || !errors.Is(err, errPortInUse) {
			return err
		}
	}
	return err
}

// run starts postgres on s.Port and waits until it is ready, reaping it on failure.
func (s *Server) run(ctx context.Context, u *procgroup.User) error {
	logFile, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// The child keeps its own descriptor; ours is not needed once it has started.
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(s.BinDir, "postgres"), "-D", s.DataDir, "-p", strconv.Itoa(s.Port))
	s.prepare(cmd, u)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.proc, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)
	if err := s.waitReady(ctx); err != nil {
		return errors.Join(err, s.terminate())
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.ready(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.exited:
			return s.exitError()
		case <-deadline.C:
			return fmt.Errorf("postgres not ready after %s; log:\n%s", readyTimeout, s.logTail())
		case <-tick.C:
		}
	}
}

// ready reports whether our server answers on s.Port. It checks data_directory because
// whoever took a port we picked could be another PostgreSQL, which would answer too.
func (s *Server) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var dataDir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		return false
	}
	return filepath.Clean(dataDir) == filepath.Clean(s.DataDir)
}

func (s *Server) exitError() error {
	log := s.logTail()
	err := fmt.Errorf("postgres exited during start-up (%v); log:\n%s", s.proc.ProcessState, log)
	if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
		return fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return err
}

func (s *Server) logTail() string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	return procgroup.OutputTail(data)
}

// shutdownSteps escalate: SIGINT is fast shutdown (clients are disconnected, a checkpoint
// that fsync=off makes cheap), SIGQUIT immediate shutdown, SIGKILL the last resort.
var shutdownSteps = []struct {
	sig  os.Signal
	wait time.Duration
}{
	{os.Interrupt, 20 * time.Second},
	{procgroup.SigQuit, 5 * time.Second},
	{os.Kill, 5 * time.Second},
}

// terminate stops the running server process, if any, and reaps it and its children.
func (s *Server) terminate() error {
	if s.proc == nil {
		return nil
	}
	pid := s.proc.Process.Pid
	exited := s.awaitExit()
	// Backends leave on their own once the postmaster is gone; killing the group makes
	// sure of it before the caller removes their directory.
	err := procgroup.KillGroup(pid)
	if !exited {
		return errors.Join(fmt.Errorf("postgres (pid %d) did not exit", pid), err)
	}
	s.proc = nil
	return err
}

func (s *Server) awaitExit() bool {
	for _, step := range shutdownSteps {
		if err := s.proc.Process.Signal(step.sig); errors.Is(err, os.ErrProcessDone) {
			break
		}
		select {
		case <-s.exited:
			return true
		case <-time.After(step.wait):
		}
	}
	select {
	case <-s.exited:
		return true
	case <-time.After(time.Second):
		return false
	}
}
