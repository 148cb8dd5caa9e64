package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/berthos/berth/cloudinit"
)

// newCloudInitExecuteCmd is `ros cloud-init-execute` (also argv0
// `cloud-init-execute`): apply write_files, ssh_authorized_keys, hostname,
// rancher.sysctl and runcmd of the merged config. The engines run it as a
// one-shot system service.
func newCloudInitExecuteCmd(g *globalFlags) *cobra.Command {
	var kernelHostname, commandsInRoot, strict bool
	cmd := &cobra.Command{
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
			opts := []cloudinit.ExecOption{cloudinit.WithLogger(log)}
			if commandsInRoot {
				opts = append(opts, cloudinit.WithCommandRoot(g.root))
			}
			if cmd.Flags().Changed("kernel-hostname") {
				opts = append(opts, cloudinit.WithKernelHostname(kernelHostname))
			}
			err = cloudinit.Execute(cmd.Context(), cfg, g.root, opts...)
			if err != nil && !strict {
				// Each failed step is logged above; the console, User
				// Docker and ntp come after this one-shot, and a typo in
				// runcmd must not keep a user from logging in to fix it.
				fmt.Fprintf(cmd.ErrOrStderr(), "cloud-init-execute: some steps failed (the rest were applied): %v\n", err)
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 when any step fails (default: log it and exit 0, so that what comes after still starts)")
	cmd.Flags().BoolVar(&kernelHostname, "kernel-hostname", false, "also set the kernel's hostname (default: only when --root is /)")
	cmd.Flags().BoolVar(&commandsInRoot, "commands-in-root", false, "run runcmd and the user-data script chrooted into --root (the host's filesystem, from a container)")
	return cmd
}
