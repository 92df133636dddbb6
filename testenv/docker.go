package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

const (
	dockerImage = "postgres:15"
	// dockerProbeBudget bounds the whole "is there an engine?" check, so machines without
	// Docker lose almost nothing before falling through to local binaries.
	dockerProbeBudget = 1500 * time.Millisecond
	dockerDialTimeout = 500 * time.Millisecond
	// dockerStartTimeout allows for pulling the image on first use.
	dockerStartTimeout = 3 * time.Minute
	dockerPassword     = "postgres"
	dockerSuperuser    = "postgres"
)

// dockerSource starts postgres:15 through testcontainers, after checking that an engine
// answers at all: testcontainers itself can block for long or panic without one.
func dockerSource(ctx context.Context) (*server, error) {
	if err := probeDocker(); err != nil {
		return nil, err
	}
	return startContainer(ctx)
}

func startContainer(ctx context.Context) (srv *server, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("testcontainers panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, dockerStartTimeout)
	defer cancel()
	ctr, err := tcpostgres.Run(ctx, dockerImage,
		tcpostgres.WithUsername(dockerSuperuser),
		tcpostgres.WithPassword(dockerPassword),
		tcpostgres.BasicWaitStrategies(),
		// The same speed-over-durability settings as a local server.
		testcontainers.WithCmd("postgres", "-c", "fsync=off", "-c", "synchronous_commit=off",
			"-c", "full_page_writes=off", "-c", "max_connections=200"),
	)
	if err != nil {
		return nil, errors.Join(err, testcontainers.TerminateContainer(ctr))
	}
	srv, err = containerServer(ctx, ctr)
	if err != nil {
		return nil, errors.Join(err, testcontainers.TerminateContainer(ctr))
	}
	return srv, nil
}

func containerServer(ctx context.Context, ctr *tcpostgres.PostgresContainer) (*server, error) {
	host, err := ctr.Host(ctx)
	if err != nil {
		return nil, err
	}
	port, err := ctr.MappedPort(ctx, "5432/tcp")
	if err != nil {
		return nil, err
	}
	pg := PG{Host: host, Port: int(port.Num()), Superuser: dockerSuperuser, Password: dockerPassword, Source: SourceDocker}
	cfg, err := pgx.ParseConfig(pg.dsnFor("postgres"))
	if err != nil {
		return nil, err
	}
	stop := func() error { return testcontainers.TerminateContainer(ctr) }
	return newServer(ctx, pg, cfg, stop)
}

// probeDocker dials every place an engine could listen and succeeds on the first answer.
func probeDocker() error {
	endpoints := dockerEndpoints()
	if len(endpoints) == 0 {
		return errors.New("no Docker engine: DOCKER_HOST unset and no docker.sock found")
	}
	deadline := time.Now().Add(dockerProbeBudget)
	var errs []error
	for _, ep := range endpoints {
		timeout := min(dockerDialTimeout, time.Until(deadline))
		if timeout <= 0 {
			errs = append(errs, fmt.Errorf("%s: probe budget spent", ep))
			break
		}
		conn, err := net.DialTimeout(ep.network, ep.address, timeout)
		if err == nil {
			conn.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no Docker engine reachable: %w", errors.Join(errs...))
}

type dockerEndpoint struct{ network, address string }

func (e dockerEndpoint) String() string { return e.network + "://" + e.address }

// dockerEndpoints lists where testcontainers would look for an engine: its properties
// file, DOCKER_HOST, the default socket, the rootless sockets. Only sockets that exist are
// listed. An engine behind a scheme we cannot dial (ssh://, npipe://) is not used: the
// probe could not bound its cost.
func dockerEndpoints() []dockerEndpoint {
	props := testcontainersProperties()
	hosts := []string{props["tc.host"], os.Getenv("DOCKER_HOST"), "unix:///var/run/docker.sock", props["docker.host"]}
	home, _ := os.UserHomeDir()
	for _, sock := range []string{
		filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "docker.sock"),
		filepath.Join(home, ".docker", "run", "docker.sock"),
		filepath.Join(home, ".docker", "desktop", "docker.sock"),
		filepath.Join("/run/user", strconv.Itoa(os.Getuid()), "docker.sock"),
	} {
		hosts = append(hosts, "unix://"+sock)
	}
	var eps []dockerEndpoint
	for _, h := range hosts {
		if ep, ok := parseDockerHost(h); ok {
			eps = append(eps, ep)
		}
	}
	return eps
}

func parseDockerHost(host string) (dockerEndpoint, bool) {
	u, err := url.Parse(host)
	if err != nil || host == "" {
		return dockerEndpoint{}, false
	}
	switch u.Scheme {
	case "unix":
		if _, err := os.Stat(u.Path); err != nil {
			return dockerEndpoint{}, false
		}
		return dockerEndpoint{"unix", u.Path}, true
	case "tcp":
		return dockerEndpoint{"tcp", u.Host}, true
	}
	return dockerEndpoint{}, false
}

// testcontainersProperties reads the key=value lines of ~/.testcontainers.properties.
func testcontainersProperties() map[string]string {
	props := map[string]string{}
	home, err := os.UserHomeDir()
	if err != nil {
		return props
	}
	f, err := os.Open(filepath.Join(home, ".testcontainers.properties"))
	if err != nil {
		return props
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			props[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return props
}
