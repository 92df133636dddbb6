package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/pgcloak/pgcloak/internal/procgroup"
)

// vaultBuildVersion is the Vault built from modules, and the key of its cache directory.
// v1.21.0 is known to compile as a dependency; v1.21.4 does not.
const vaultBuildVersion = "v1.21.0"

// vaultBuildGoVersion is the go directive of the build module: Vault v1.21.0's own.
const vaultBuildGoVersion = "1.25.1"

const (
	// vaultBuildTimeout bounds one build; a cold one took 27 minutes on a loaded 2-core machine.
	vaultBuildTimeout = 45 * time.Minute
	// vaultBuildProgress is how often a running build says it still runs.
	vaultBuildProgress = time.Minute
)

const vaultMainGo = `// Command vault is HashiCorp Vault's server, built from Go modules for
// pgcloak's tests where no vault binary or Docker is available.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() { os.Exit(command.Run(os.Args[1:])) }
`

// vaultCacheDir is <user cache>/pgcloak/vault/<version>: src/ holds the build module,
// vault the binary. It lives outside the repository and survives test runs.
func vaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "pgcloak", "vault", vaultBuildVersion), nil
}

// cachedVaultBinary returns the cached Vault binary, building it first if need be. A lock
// file serialises builds across test binaries: the second waits, then reuses the first's
// binary. The binary appears only complete (built aside, then renamed), so a killed build
// leaves none, only a warm Go build cache for the next attempt.
func cachedVaultBinary(ctx context.Context, logf func(string, ...any)) (string, error) {
	dir, err := vaultCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vault")
	if checkVaultBinary(ctx, bin) == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lockPath := filepath.Join(dir, "build.lock")
	unlock, err := lockFile(ctx, lockPath, func() {
		logf("testenv: waiting for another process building Vault %s (lock %s)", vaultBuildVersion, lockPath)
	})
	if err != nil {
		return "", fmt.Errorf("lock %s: %w", lockPath, err)
	}
	defer unlock()
	if checkVaultBinary(ctx, bin) == nil { // built while we waited
		return bin, nil
	}
	if err := buildVault(ctx, dir, logf); err != nil {
		return "", err
	}
	return bin, nil
}

// checkVaultBinary reports whether path is a Vault binary that runs.
func checkVaultBinary(ctx context.Context, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		return fmt.Errorf("%s version: %w", path, err)
	}
	if !bytes.HasPrefix(out, []byte("Vault v")) {
		return fmt.Errorf("%s version printed %q", path, procgroup.OutputTail(out))
	}
	return nil
}

// buildVault writes dir/src (keeping a go.mod an earlier build resolved) and builds it into
// dir/vault, logging to dir/build.log.
func buildVault(ctx context.Context, dir string, logf func(string, ...any)) error {
	goCmd, err := findGo()
	if err != nil {
		return err
	}
	src := filepath.Join(dir, "src")
	if err := writeVaultSrc(src); err != nil {
		return err
	}
	logPath := filepath.Join(dir, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	bin := filepath.Join(dir, "vault")
	tmp := bin + ".tmp-" + strconv.Itoa(os.Getpid())
	defer os.Remove(tmp) // gone after the rename; a failed build's leftovers otherwise

	ctx, cancel := context.WithTimeout(ctx, vaultBuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "build", "-mod=mod", "-o", tmp, ".")
	cmd.Dir = src
	// A go.work above, or GOOS/GOARCH set for cross-compiling, must not shape this build.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOOS="+runtime.GOOS, "GOARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, ended whole on cancellation (a signal, Run's end, the timeout).
	cmd.SysProcAttr = procgroup.SysProcAttr(nil)
	cmd.Cancel = func() error { return procgroup.KillGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 10 * time.Second

	start := time.Now()
	logf("testenv: building Vault %s from modules into %s (first time: 5-30 min depending on cores and load, ~4 GB of module cache; log %s). "+
		"Give go test a -timeout of 30m or more for it; if it times out, the Go build cache keeps the progress",
		vaultBuildVersion, bin, logPath)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(vaultBuildProgress)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-tick.C:
			logf("testenv: still building Vault %s (%s)", vaultBuildVersion, time.Since(start).Round(time.Second))
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		data, _ := os.ReadFile(logPath)
		return fmt.Errorf("go build of Vault %s in %s: %w\n%s", vaultBuildVersion, src, err, procgroup.OutputTail(data))
	}
	if err := checkVaultBinary(ctx, tmp); err != nil {
		return fmt.Errorf("built Vault does not run: %w", err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return err
	}
	logf("testenv: built Vault %s in %s", vaultBuildVersion, time.Since(start).Round(time.Second))
	return nil
}

// writeVaultSrc writes the build module. An existing go.mod that requires the right Vault
// is kept: it holds the whole resolved graph, which -mod=mod would otherwise recompute.
func writeVaultSrc(src string) error {
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := writeFileIfChanged(filepath.Join(src, "main.go"), vaultMainGo); err != nil {
		return err
	}
	modPath := filepath.Join(src, "go.mod")
	if data, err := os.ReadFile(modPath); err == nil &&
		strings.Contains(string(data), "github.com/hashicorp/vault "+vaultBuildVersion+"\n") {
		return nil
	}
	gomod := "module pgcloak.local/vaultserver\n\ngo " + vaultBuildGoVersion +
		"\n\nrequire github.com/hashicorp/vault " + vaultBuildVersion + "\n"
	// A go.sum for another go.mod is at best useless.
	if err := os.Remove(filepath.Join(src, "go.sum")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.WriteFile(modPath, []byte(gomod), 0o644)
}

func writeFileIfChanged(path, content string) error {
	if data, err := os.ReadFile(path); err == nil && string(data) == content {
		return nil
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// findGo returns the go command of the toolchain that built this test binary, else the
// one on PATH.
func findGo() (string, error) {
	name := "go"
	if runtime.GOOS == "windows" {
		name = "go.exe"
	}
	//lint:ignore SA1019 the toolchain that built us is the best guess, and PATH the fallback
	if root := runtime.GOROOT(); root != "" {
		p := filepath.Join(root, "bin", name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("no go command (GOROOT/bin/go or PATH) to build Vault with")
	}
	return p, nil
}
