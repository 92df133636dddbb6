package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/migrator"
	"github.com/pgcloak/pgcloak/policy"
)

func newKeysCommand(g *globalFlags) *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Create, list, rotate, retire, disable and destroy column keys"}
	keys.AddCommand(
		newKeysCreateCommand(g),
		newKeysListCommand(g),
		keyActionCommand(g, "rotate", "Add a new primary version to a key; older versions still decrypt",
			func(cmd *cobra.Command, s keymap.Store, name string) error { return s.Rotate(cmd.Context(), name) }),
		keyActionCommand(g, "disable", "Stop all encryption and decryption with a key until it is enabled",
			func(cmd *cobra.Command, s keymap.Store, name string) error {
				return s.SetEnabled(cmd.Context(), name, false)
			}),
		keyActionCommand(g, "enable", "Re-enable a disabled key",
			func(cmd *cobra.Command, s keymap.Store, name string) error {
				return s.SetEnabled(cmd.Context(), name, true)
			}),
		newKeysRetireCommand(g),
		newKeysDestroyCommand(g),
	)
	return keys
}

// withStore loads the config, opens its key store and runs fn with them.
func withStore(cmd *cobra.Command, g *globalFlags, fn func(*policy.Config, *store) error) error {
	cfg, err := loadConfig(g.configPath)
	if err != nil {
		return err
	}
	log, err := g.logger()
	if err != nil {
		return err
	}
	st, err := openStore(cmd.Context(), cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(cfg, st)
}

func newKeysCreateCommand(g *globalFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create a key named in the policy (its kind comes from the policy); --all: every missing one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return errors.New("give a key name or --all")
			}
			return withStore(cmd, g, func(cfg *policy.Config, st *store) error {
				idx := policy.NewIndex(cfg.Policy)
				if !all {
					k, ok := idx.Key(args[0])
					if !ok {
						return fmt.Errorf("key %q is not defined in policy.keys", args[0])
					}
					if err := st.Create(cmd.Context(), k.Name, k.Kind); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "created %s key %s\n", k.Kind, k.Name)
					return nil
				}
				created, err := keymap.CreateMissing(cmd.Context(), st, idx.Keys())
				for _, name := range created {
					fmt.Fprintf(cmd.OutOrStdout(), "created %s\n", name)
				}
				if err == nil && len(created) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "every policy key exists already")
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "create every policy key that does not exist yet")
	return cmd
}

func newKeysListCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List keys with their kinds, versions and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(_ *policy.Config, st *store) error {
				infos, err := st.List(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NAME\tKIND\tSTATE\tVERSIONS\tENABLED\tPRIMARY\tCREATED")
				for _, k := range infos {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", k.Name, k.Kind, k.State, k.Versions, k.Enabled, k.PrimaryID,
						k.Created.UTC().Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
}

func keyActionCommand(g *globalFlags, use, short string, act func(*cobra.Command, keymap.Store, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, g, func(cfg *policy.Config, st *store) error {
				if err := act(cmd, st, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: done (%s)\n", args[0], use)
				if use == "rotate" {
					fmt.Fprintf(cmd.OutOrStdout(), "proxies encrypt under the new version once their key cache expires (keystore.cache_ttl, %s); then run pgcloak reencrypt on each column under %s, and pgcloak keys retire %s to disable the old versions\n",
						cacheTTL(cfg), args[0], args[0])
				}
				return nil
			})
		},
	}
}

func newKeysDestroyCommand(g *globalFlags) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "destroy NAME --yes",
		Short: "Crypto-shred a key: afterwards nobody can decrypt data written under it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return errors.New("destroy is irreversible: every value under this key becomes unreadable; repeat with --yes")
			}
			return withStore(cmd, g, func(_ *policy.Config, st *store) error {
				if err := st.Destroy(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: destroyed\n", args[0])
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm destruction")
	return cmd
}

func newKEKCommand(g *globalFlags) *cobra.Command {
	kek := &cobra.Command{Use: "kek", Short: "Manage the key-encryption key that wraps stored keysets"}
	kek.AddCommand(&cobra.Command{
		Use:   "rewrap",
		Short: "Re-encrypt stored keysets under the newest transit key version (table data is untouched)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, g, func(_ *policy.Config, st *store) error {
				if st.vault == nil || st.Store != keymap.Store(st.vault) {
					return errors.New("kek rewrap needs keystore.provider vault (the local store's keysets are wrapped by its master key)")
				}
				n, err := st.vault.Rewrap(cmd.Context())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rewrapped %d keyset(s) under the newest version of the transit key\n", n)
				return nil
			})
		},
	})
	return kek
}

// retireOptions are the flags of keys retire.
type retireOptions struct {
	dsn string
}

func newKeysRetireCommand(g *globalFlags) *cobra.Command {
	o := &retireOptions{}
	cmd := &cobra.Command{
		Use:   "retire NAME [--dsn DSN]",
		Short: "Disable every version of a key but the primary, once reencrypt has moved every row to it",
		Long: `Disable every version of a key but the primary. Afterwards values under the
retired versions no longer decrypt, and searches on the key's columns no
longer look for them: an ordered key sorts again (ORDER BY, min, max) and
searches one range per value instead of one per version.

Before retiring, retire reads every policy column under the key in
PostgreSQL (bypassing the proxy) and refuses, retiring nothing, while one
has an unfinished migration or holds values that are not ciphertexts
under the primary version: run pgcloak reencrypt on it first.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, g, func(cfg *policy.Config, st *store) error {
				return retireKey(cmd.Context(), cfg, st, args[0], o, cmd.OutOrStdout())
			})
		},
	}
	cmd.Flags().StringVar(&o.dsn, "dsn", "", "PostgreSQL connection string (default: upstream.address with PG* environment variables)")
	return cmd
}

// retireKey retires the old versions of key name once no column under it
// needs them.
func retireKey(ctx context.Context, cfg *policy.Config, st *store, name string, o *retireOptions, out io.Writer) error {
	info, err := keyInfo(ctx, st, name)
	if err != nil {
		return err
	}
	// A proxy whose key cache predates the rotation still encrypts new
	// values under the old primary: the check below would miss those
	// written after it. (The reload bound is the key store's timeout.)
	if !info.Rotated.IsZero() {
		until := info.Rotated.Add(cacheTTL(cfg) + keyReloadTime(cfg))
		if wait := time.Until(until); wait > 0 {
			fmt.Fprintf(out, "waiting %s for proxies' key caches to expire after the rotation of %s\n", wait.Round(time.Second), name)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	rules := keyColumns(policy.NewIndex(cfg.Policy), name)
	if len(rules) == 0 {
		fmt.Fprintf(out, "no policy column uses key %s\n", name)
	} else if err := checkRetirable(ctx, cfg, o.dsn, rules, info.PrimaryID); err != nil {
		return err
	}
	// A rotation since the check would make retire disable the version
	// the check took for the primary.
	if now, err := keyInfo(ctx, st, name); err != nil {
		return err
	} else if now.PrimaryID != info.PrimaryID {
		return fmt.Errorf("key %s was rotated while its columns were checked; run keys retire again later", name)
	}
	n, err := st.Retire(ctx, name)
	if err != nil {
		return fmt.Errorf("key %s: %w", name, err)
	}
	if n == 0 {
		fmt.Fprintf(out, "%s: nothing to retire (only the primary version %d is enabled)\n", name, info.PrimaryID)
		return nil
	}
	fmt.Fprintf(out, "%s: retired %d version(s); only the primary version %d decrypts now\n", name, n, info.PrimaryID)
	fmt.Fprintf(out, "proxies stop using the retired versions once their key cache expires (keystore.cache_ttl, %s)\n", cacheTTL(cfg))
	return nil
}

// keyInfo describes one key of the store.
func keyInfo(ctx context.Context, st keymap.Store, name string) (keymap.KeyInfo, error) {
	infos, err := st.List(ctx)
	if err != nil {
		return keymap.KeyInfo{}, err
	}
	for _, k := range infos {
		if k.Name != name {
			continue
		}
		if k.State == keymap.KeyDestroyed {
			return k, fmt.Errorf("key %s: %w", name, keymap.ErrKeyDestroyed)
		}
		return k, nil
	}
	return keymap.KeyInfo{}, fmt.Errorf("key %s: %w", name, keymap.ErrKeyNotFound)
}

// keyReloadTime bounds how long a proxy's key reload may take once
// started: a request to the key store.
func keyReloadTime(cfg *policy.Config) time.Duration {
	if cfg.Keystore.Provider != "vault" {
		return 0
	}
	d, err := time.ParseDuration(cfg.Keystore.Vault.Timeout)
	if err != nil || d <= 0 {
		return 10 * time.Second
	}
	return d
}

// keyColumns are the policy columns under key name, by name.
func keyColumns(idx *policy.Index, name string) []*policy.ColumnRule {
	var out []*policy.ColumnRule
	for _, t := range idx.Tables() {
		for _, c := range t.Columns {
			if c.KeyName == name {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b *policy.ColumnRule) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// checkRetirable refuses, naming the first column and what it holds,
// while a column under the key holds a value that is not a ciphertext
// under the primary version or is mid-migration.
func checkRetirable(ctx context.Context, cfg *policy.Config, dsn string, rules []*policy.ColumnRule, primary uint32) error {
	cc, err := parseCheckDSN(cfg, dsn)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, r := range rules {
		l, err := migrator.FindLeftovers(ctx, conn, r, primary)
		if err != nil {
			return err
		}
		if l.None() {
			continue
		}
		table := pgx.Identifier{r.Schema, r.Table}.Sanitize()
		column := pgx.Identifier{r.Column}.Sanitize()
		switch {
		case l.Unfinished != "":
			return fmt.Errorf("%s has an unfinished pgcloak %s: run pgcloak %s --table %s --column %s again to finish it first; nothing retired",
				r.Name(), l.Unfinished.Command(), l.Unfinished.Command(), table, column)
		case l.OldVersions > 0:
			return fmt.Errorf("%s holds %d value(s) under versions of key %s other than the primary: run pgcloak reencrypt --table %s --column %s first; nothing retired",
				r.Name(), l.OldVersions, r.KeyName, table, column)
		default:
			return fmt.Errorf("%s holds %d value(s) that are not ciphertexts (plaintext, or the text forms of an interrupted migration): run pgcloak encrypt --table %s --column %s first; nothing retired",
				r.Name(), l.NotCiphertext, table, column)
		}
	}
	return nil
}
