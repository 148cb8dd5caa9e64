package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/berthos/berth/cloudinit"
)

// newCloudInitExecuteCmd is `ros cloud-init-execute` (also argv0
// `cloud-init-execute`): apply write_files, ssh_authorized_keys, hostname,
// rancher.sysctl and runcmd of the merged config. The engines run it as a
// one-shot system service.
func newCloudInitExecuteCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cloud-init-execute",
		Short: "Apply write_files, ssh_authorized_keys, hostname, sysctl and runcmd of the config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, rep, err := cloudinit.Load(g.root)
			if err != nil {
				return err
			}
			printErrors(cmd.ErrOrStderr(), rep)
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return cloudinit.Execute(cmd.Context(), cfg, g.root, cloudinit.WithLogger(log))
		},
	}
}
