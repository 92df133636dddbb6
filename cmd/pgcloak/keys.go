package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgcloak/pgcloak/keymap"
	"github.com/pgcloak/pgcloak/policy"
)

func newKeysCommand(g *globalFlags) *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Create, list, rotate, disable and destroy column keys"}
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
				fmt.Fprintln(w, "NAME\tKIND\tSTATE\tVERSIONS\tPRIMARY\tCREATED")
				for _, k := range infos {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", k.Name, k.Kind, k.State, k.Versions, k.PrimaryID,
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
					fmt.Fprintf(cmd.OutOrStdout(), "proxies encrypt under the new version once their key cache expires (keystore.cache_ttl, %s); then run pgcloak reencrypt on each column under %s\n",
						cacheTTL(cfg), args[0])
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
