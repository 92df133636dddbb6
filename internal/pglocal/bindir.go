package pglocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvBinDir names the environment variable that pins the directory of initdb and postgres.
const EnvBinDir = "PGCLOAK_PG_BINDIR"

// debianBinGlob is where Debian and Ubuntu install one directory per server major version.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// serverBinaries are the programs a local server needs. pg_ctl is not among them: the
// server is run directly so that this package owns its process (see Server.Stop).
var serverBinaries = []string{"initdb", "postgres"}

// FindBinDir returns the directory holding the PostgreSQL server binaries: $PGCLOAK_PG_BINDIR
// if set, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin, else the
// directory of initdb on PATH.
func FindBinDir(ctx context.Context) (string, error) {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		// An explicit choice that doesn't work is an error, not a cue to guess elsewhere.
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("%s: %w", EnvBinDir, err)
		}
		return dir, nil
	}
	var tried []string
	for _, find := range []func(context.Context) (string, error){pgConfigBinDir, debianBinDir, pathBinDir} {
		dir, err := find(ctx)
		if err == nil {
			err = checkBinDir(dir)
		}
		if err == nil {
			return dir, nil
		}
		tried = append(tried, err.Error())
	}
	return "", fmt.Errorf("no PostgreSQL server binaries found (set %s): %s", EnvBinDir, strings.Join(tried, "; "))
}

// checkBinDir reports whether dir holds every server binary as an executable file.
func checkBinDir(dir string) error {
	for _, name := range serverBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", filepath.Join(dir, name))
		}
	}
	return nil
}

func pgConfigBinDir(ctx context.Context) (string, error) {
	path, err := exec.LookPath("pg_config")
	if err != nil {
		return "", fmt.Errorf("pg_config: %w", err)
	}
	// A broken wrapper script must not stall test start-up.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--bindir").Output()
	if err != nil {
		return "", fmt.Errorf("pg_config --bindir: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func debianBinDir(context.Context) (string, error) {
	dirs, _ := filepath.Glob(debianBinGlob)
	if len(dirs) == 0 {
		return "", fmt.Errorf("no %s", debianBinGlob)
	}
	return newestVersionDir(dirs), nil
}

// newestVersionDir picks the dir whose version component (the parent's name, "15" in
// /usr/lib/postgresql/15/bin) is highest, comparing numerically so 10 beats 9.6.
func newestVersionDir(dirs []string) string {
	return slices.MaxFunc(dirs, func(a, b string) int {
		return slices.Compare(versionKey(a), versionKey(b))
	})
}

func versionKey(binDir string) []int {
	var key []int
	for _, part := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			n = -1
		}
		key = append(key, n)
	}
	return key
}

func pathBinDir(context.Context) (string, error) {
	path, err := exec.LookPath("initdb")
	if err != nil {
		return "", errors.New("initdb not on PATH")
	}
	return filepath.Dir(path), nil
}
