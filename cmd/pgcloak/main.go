// Command pgcloak is the CLI of the pgcloak proxy: serve, demo, policy
// check, key lifecycle and version. Commands are thin: they parse flags,
// build the parts from the other packages and run them.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pgcloak:", err)
		os.Exit(1)
	}
}

// globalFlags are the flags every command takes.
type globalFlags struct {
	configPath string
	logLevel   string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "pgcloak",
		Short:         "Transparent column encryption proxy for PostgreSQL",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", "./pgcloak.yaml", "config file")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(newMigrateCommands(g)...)
	root.AddCommand(
		newServeCommand(g),
		newDemoCommand(g),
		newPolicyCommand(g),
		newKeysCommand(g),
		newKEKCommand(g),
		newAuthCommand(g),
		newVersionCommand(),
	)
	return root
}

func (g *globalFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}
