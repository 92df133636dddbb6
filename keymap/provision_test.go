package keymap

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/pgcloak/pgcloak/policy"
)

func TestNewLocalStoreInDirAndCreateMissing(t *testing.T) {
	dir := t.TempDir()
	store, cfg, err := NewLocalStoreInDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfg.MasterKeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v, mode %v", err, fi.Mode())
	}
	ctx := context.Background()
	keys := []policy.Key{{Name: "a", Kind: policy.Deterministic}, {Name: "b", Kind: policy.Randomized}}
	if err := store.Create(ctx, "a", policy.Deterministic); err != nil {
		t.Fatal(err)
	}
	created, err := CreateMissing(ctx, store, keys)
	if err != nil || !slices.Equal(created, []string{"b"}) {
		t.Fatalf("CreateMissing = %v, %v; want [b]", created, err)
	}
	// The config it returned reopens the same store.
	again, err := OpenLocalStore(cfg, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := again.List(ctx)
	if err != nil || len(infos) != 2 || infos[1].Kind != policy.Randomized {
		t.Fatalf("reopened store lists %+v, %v", infos, err)
	}
}
