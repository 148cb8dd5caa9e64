package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/netconf"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

// newNetconfCmd is `ros netconf`: apply rancher.network and show the
// network. The argv[0] name `netconf` is `ros netconf apply`.
func newNetconfCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "netconf",
		Short: "Apply rancher.network to the kernel and show the network",
	}
	cmd.AddCommand(newNetconfApplyCmd(g), newNetconfStatusCmd(g))
	return cmd
}

func newNetconfApplyCmd(g *globalFlags) *cobra.Command {
	var (
		file       string
		dryRun     bool
		foreground bool
		verbose    bool
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply rancher.network (from the merged config, or -c FILE)",
		Long: `Apply makes links, addresses, routes, DHCP leases, resolv.conf, hostname and
/etc/hosts match rancher.network. It is idempotent: a second run changes
nothing; addresses and routes no longer configured are removed. An invalid
config is rejected with each problem's key path and nothing is changed.

-c FILE reads a cloud-config (rancher.network inside it) or a bare network
config (interfaces:, dns:, ...). Without -c the merged config of this boot
is used (ros config).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, host, err := loadNetworkConfig(g, file)
			if err != nil {
				return err
			}
			if ps := cfg.Validate(); len(ps) > 0 {
				for _, p := range ps {
					fmt.Fprintf(cmd.ErrOrStderr(), "rancher.network.%s\n", p)
				}
				return &exitError{code: 2, err: fmt.Errorf("invalid network config: %d problem(s), nothing applied", len(ps))}
			}
			if dryRun {
				return printPlan(cmd.OutOrStdout(), cfg)
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			st, err := netconf.Apply(ctx, cfg, netconf.WithRoot(g.root), netconf.WithLogger(log), netconf.WithHostname(host))
			if st != nil {
				defer st.Close()
				for _, l := range st.Leases() {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %s from %s, expires %s\n", l.Link, l.Address, l.Server, l.Expires.Format(time.RFC3339))
				}
			}
			if err != nil && (st == nil || !foreground) {
				return fmt.Errorf("netconf apply: %w", err)
			}
			if foreground {
				if err != nil {
					// A link without a lease yet: Run keeps trying it.
					log.Warn("netconf apply", "err", err)
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "netconf: keeping leases renewed until SIGTERM")
				if err := st.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
					return fmt.Errorf("netconf: %w", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "read rancher.network from this file instead of the merged config")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan as JSON and change nothing")
	cmd.Flags().BoolVar(&foreground, "foreground", false, "stay running and keep DHCP leases renewed")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log each change")
	return cmd
}

// loadNetworkConfig returns rancher.network and the hostname (config,
// else metadata) from file or from the merged config under the root.
func loadNetworkConfig(g *globalFlags, file string) (netconf.Config, string, error) {
	if file == "" {
		c, _, err := cloudinit.Load(g.root)
		if err != nil {
			return netconf.Config{}, "", fmt.Errorf("load config: %w", err)
		}
		if c == nil {
			return netconf.Config{}, "", errors.New("load config: no config")
		}
		return c.Rancher.Network, c.Hostname, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return netconf.Config{}, "", fmt.Errorf("read network config: %w", err)
	}
	return parseNetworkConfig(b)
}

// parseNetworkConfig reads a cloud-config's rancher.network (and
// hostname), or a bare network config. Unknown keys under the network are
// errors, reported with their line in b.
func parseNetworkConfig(b []byte) (netconf.Config, string, error) {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(b, &top); err != nil {
		return netconf.Config{}, "", fmt.Errorf("parse network config: %w", err)
	}
	if len(top) == 0 {
		return netconf.Config{}, "", nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if _, ok := top["rancher"]; !ok {
		var cfg netconf.Config
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, "", fmt.Errorf("parse network config: %w", err)
		}
		return cfg, "", nil
	}
	// Only rancher.network is checked strictly; the rest of the
	// cloud-config is someone else's to validate.
	var doc struct {
		Hostname string `yaml:"hostname"`
		Rancher  struct {
			Network netconf.Config `yaml:"network"`
			Rest    map[string]any `yaml:",inline"`
		} `yaml:"rancher"`
		Rest map[string]any `yaml:",inline"`
	}
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return netconf.Config{}, "", fmt.Errorf("parse rancher.network: %w", err)
	}
	return doc.Rancher.Network, doc.Hostname, nil
}

func printPlan(w io.Writer, cfg netconf.Config) error {
	h, err := netconf.CurrentLinks()
	if err != nil {
		return err
	}
	p, err := netconf.MakePlan(cfg, h)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

func newNetconfStatusCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show links, addresses, routes, DHCP leases with their expiry, and DNS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := netconf.Inspect(cmd.Context(), netconf.WithRoot(g.root))
			if err != nil {
				return fmt.Errorf("netconf status: %w", err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return r.WriteText(cmd.OutOrStdout(), time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
