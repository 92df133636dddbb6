package keymap

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/pgcloak/pgcloak/policy"
	"github.com/tink-crypto/tink-go/v2/aead/subtle"
	"github.com/tink-crypto/tink-go/v2/tink"
)

const masterKeySize = 32

// GenerateMasterKey returns a fresh random master key in the form a local key
// store reads it: 32 bytes, standard base64.
func GenerateMasterKey() (string, error) {
	var k [masterKeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", fmt.Errorf("generating master key: %w", err)
	}
	s := base64.StdEncoding.EncodeToString(k[:])
	clear(k[:])
	return s, nil
}

// masterKeySource says where the master key comes from, for error messages;
// it names the variable or file, never the key.
func masterKeySource(cfg policy.LocalKeystore) string {
	if cfg.MasterKeyFile != "" {
		return fmt.Sprintf("master key file %s", cfg.MasterKeyFile)
	}
	return fmt.Sprintf("environment variable %s", cfg.MasterKeyEnv)
}

// openMasterAEAD reads the master key and turns it into the AEAD that wraps
// keysets, so the raw bytes live only for the duration of this call.
func openMasterAEAD(cfg policy.LocalKeystore, getenv func(string) string) (tink.AEAD, error) {
	encoded, err := readMasterKey(cfg, getenv)
	if err != nil {
		return nil, err
	}
	src := masterKeySource(cfg)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not valid base64", ErrMasterKey, src)
	}
	defer clear(raw)
	if len(raw) != masterKeySize {
		return nil, fmt.Errorf("%w: %s must decode to %d bytes, got %d", ErrMasterKey, src, masterKeySize, len(raw))
	}
	a, err := subtle.NewAESGCM(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: cannot build AES-256-GCM", ErrMasterKey, src)
	}
	return a, nil
}

func readMasterKey(cfg policy.LocalKeystore, getenv func(string) string) (string, error) {
	if cfg.MasterKeyFile != "" {
		b, err := os.ReadFile(cfg.MasterKeyFile)
		if err != nil {
			return "", fmt.Errorf("%w: cannot read master key file %s: %v", ErrMasterKey, cfg.MasterKeyFile, pathErrReason(err))
		}
		return string(b), nil
	}
	if cfg.MasterKeyEnv == "" {
		return "", fmt.Errorf("%w: keystore.local sets neither master_key_env nor master_key_file", ErrMasterKey)
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	v := getenv(cfg.MasterKeyEnv)
	if strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%w: environment variable %s is not set (generate one with `openssl rand -base64 32`)", ErrMasterKey, cfg.MasterKeyEnv)
	}
	return v, nil
}

// pathErrReason strips the path from a *PathError (the caller already names
// the file) so messages stay short.
func pathErrReason(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
