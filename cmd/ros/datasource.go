package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources"
	"github.com/berthos/berth/datasources/source"
)

// newDatasourceCmd is `ros datasource`: list, fetch (also argv[0]
// cloud-init-save) and explain.
func newDatasourceCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "datasource",
		Short: "Where this machine's user-data and metadata come from",
	}
	cmd.AddCommand(newDatasourceListCmd(g), newDatasourceFetchCmd(g), newDatasourceExplainCmd(g))
	return cmd
}

func newDatasourceListCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the known sources and what this machine looks like",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := datasources.Identify(g.root)
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, map[string]any{"kinds": datasources.Kinds(), "platform": p})
			}
			fmt.Fprintln(out, "sources (rancher.cloud_init.datasources, type[:argument]):")
			for _, k := range datasources.Kinds() {
				fmt.Fprintf(out, "  %s\n", dsUsage[k])
			}
			fmt.Fprintln(out, "this machine:")
			fmt.Fprintf(out, "  dmi: sys_vendor=%q product_name=%q bios_vendor=%q chassis_asset_tag=%q\n",
				p.SysVendor, p.ProductName, p.BIOSVendor, p.AssetTag)
			if p.Cloud != "" {
				fmt.Fprintf(out, "  looks like: %s (%s)\n", p.Cloud, p.CloudWhy)
			} else {
				fmt.Fprintln(out, "  looks like: no known cloud")
			}
			for _, d := range p.Devices {
				fmt.Fprintf(out, "  block device %s: %s label %q\n", d.Path, d.FSType, d.Label)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

var dsUsage = map[string]string{
	"cmdline":     "cmdline               cloud-config-url=URL or cloud-config=BASE64 on the kernel command line",
	"configdrive": "configdrive[:DEVICE]  an OpenStack config drive (label config-2, ISO9660 or FAT)",
	"ec2":         "ec2                   EC2 instance metadata (IMDSv2, IMDSv1 fallback); $AWS_EC2_METADATA_SERVICE_ENDPOINT",
	"gce":         "gce                   Google Compute Engine metadata; $GCE_METADATA_HOST",
	"openstack":   "openstack             OpenStack Nova metadata service; $BERTH_OPENSTACK_METADATA_URL",
	"url":         "url:URL               user-data from a URL",
	"file":        "file:PATH             user-data from a file",
}

func newDatasourceFetchCmd(g *globalFlags) *cobra.Command {
	var (
		list          []string
		budget        time.Duration
		sourceTimeout time.Duration
		asJSON        bool
		dryRun        bool
	)
	cmd := &cobra.Command{
		Use:   "fetch",
		Short: "Run the datasources now, print the decision and save the result",
		Long: `Runs the configured datasources (rancher.cloud_init.datasources, or --datasources)
concurrently under one budget, list order being priority, prints which one was
used and why, and saves its user-data and metadata under /var/lib/rancher/conf
(unless --dry-run). Called as cloud-init-save, it does the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := []datasources.Option{datasources.WithRoot(g.root)}
			cfg, _, err := cloudinit.Load(g.root)
			switch {
			case err != nil && len(list) == 0:
				return fmt.Errorf("datasource fetch: read config (or give --datasources): %w", err)
			case err == nil && cfg != nil:
				if len(list) == 0 {
					list = cfg.Rancher.CloudInit.Datasources
				}
				opts = append(opts, datasources.ConfigOptions(cfg.Rancher.CloudInit)...)
				proxy, err := cfg.Rancher.Network.Proxy()
				if err != nil {
					return fmt.Errorf("datasource fetch: %w", err)
				}
				if proxy != nil {
					opts = append(opts, datasources.WithProxy(proxy))
				}
			}
			if len(list) == 0 {
				return fmt.Errorf("datasource fetch: no datasources configured (rancher.cloud_init.datasources or --datasources)")
			}
			if cmd.Flags().Changed("budget") {
				// Later options win over the config's.
				opts = append(opts, datasources.WithBudget(budget))
			}
			if sourceTimeout > 0 {
				opts = append(opts, datasources.WithSourceTimeout(sourceTimeout))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := datasources.Run(ctx, list, opts...)
			if err != nil {
				return fmt.Errorf("datasource fetch: %w", err)
			}
			var saveErr error
			if !dryRun {
				saveErr = datasources.Save(g.root, d)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, fetchOutput{Decision: d, Result: d.Result, Saved: !dryRun && saveErr == nil}); err != nil {
					return err
				}
			} else {
				fmt.Fprint(out, d.Explain())
				if r := d.Result; r != nil {
					fmt.Fprintf(out, "hostname: %s\nssh keys: %d\nuser-data: %d bytes\n", r.Meta.Hostname, len(r.Meta.SSHPublicKeys), len(r.UserData))
				}
				if !dryRun && saveErr == nil {
					fmt.Fprintf(out, "saved under %s\n", g.path("/var/lib/rancher"))
				}
			}
			if saveErr != nil {
				return fmt.Errorf("datasource fetch: %w", saveErr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&list, "datasources", nil, "sources in priority order (default: rancher.cloud_init.datasources)")
	f.DurationVar(&budget, "budget", datasources.DefaultBudget, "time budget of the whole run (default: rancher.cloud_init.timeout)")
	f.DurationVar(&sourceTimeout, "source-timeout", 0, "deadline of each source (default 30s network, 10s local)")
	f.BoolVar(&asJSON, "json", false, "print the decision and the result as JSON")
	f.BoolVar(&dryRun, "dry-run", false, "do not save anything")
	return cmd
}

// fetchOutput is what `ros datasource fetch --json` prints.
type fetchOutput struct {
	Decision *datasources.Decision `json:"decision"`
	Result   *source.Result        `json:"result,omitempty"`
	Saved    bool                  `json:"saved"`
}

// MarshalJSON adds the user-data: as text when it is text (a
// cloud-config, a script), else base64 (gzip).
func (o fetchOutput) MarshalJSON() ([]byte, error) {
	type plain fetchOutput
	v := struct {
		plain
		UserData       string `json:"user_data,omitempty"`
		UserDataBase64 []byte `json:"user_data_base64,omitempty"`
	}{plain: plain(o)}
	if o.Result != nil {
		if utf8.Valid(o.Result.UserData) {
			v.UserData = string(o.Result.UserData)
		} else {
			v.UserDataBase64 = o.Result.UserData
		}
	}
	return json.Marshal(v)
}

func newDatasourceExplainCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Print why each source was used or not in the last run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := datasources.LoadDecision(g.root)
			if err != nil {
				return fmt.Errorf("datasource explain: %w (has `ros datasource fetch` run?)", err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), d)
			}
			fmt.Fprint(cmd.OutOrStdout(), d.Explain())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the saved record as JSON")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// dsArgs maps argv[0] cloud-init-save onto `datasource fetch`.
func dsArgs(args []string) []string {
	return append([]string{"datasource", "fetch"}, args...)
}
