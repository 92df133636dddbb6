package testenv

import (
	"context"
	"errors"
	"fmt"

	"github.com/testcontainers/testcontainers-go"
	tcvault "github.com/testcontainers/testcontainers-go/modules/vault"
)

// vaultDockerImage is the server image of the docker source, run in dev mode (in-memory
// storage, unsealed, plain http): it cannot Stop and Start.
const vaultDockerImage = "hashicorp/vault:1.21"

// vaultDockerSource runs Vault in Docker through testcontainers, after checking that an
// engine answers at all (see probeDocker).
func vaultDockerSource(ctx context.Context) (*vaultServer, error) {
	if err := probeDocker(); err != nil {
		return nil, err
	}
	return startVaultContainer(ctx)
}

func startVaultContainer(ctx context.Context) (srv *vaultServer, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("testcontainers panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, dockerStartTimeout)
	defer cancel()
	token := "root-" + randomSuffix()
	ctr, err := tcvault.Run(ctx, vaultDockerImage, tcvault.WithToken(token))
	if err != nil {
		return nil, errors.Join(err, testcontainers.TerminateContainer(ctr))
	}
	stop := func() error { return testcontainers.TerminateContainer(ctr) }
	addr, err := ctr.HttpHostAddress(ctx)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	srv = &vaultServer{addr: addr, token: token, source: SourceDocker, stop: stop}
	if err := srv.connect(ctx); err != nil {
		return nil, errors.Join(err, stop())
	}
	return srv, nil
}
