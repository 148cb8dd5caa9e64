package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthos/berth/sysinit"
)

// newWaitForDockerCmd is `ros wait-for-docker` and the `wait-for-docker`
// name RancherOS shipped: scripts run at boot (rc.local, start.sh) call it
// before they use User Docker, which starts after them.
func newWaitForDockerCmd(g *globalFlags) *cobra.Command {
	var timeout time.Duration
	var system bool
	cmd := &cobra.Command{
		Use:   "wait-for-docker [--timeout DURATION] [--system]",
		Short: "Wait until User Docker (or System Docker) answers",
		Example: "  wait-for-docker && docker run -d nginx\n" +
			"  ros wait-for-docker --timeout 30s --system",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			socket, name := "/var/run/docker.sock", "User Docker"
			if system {
				socket, name = "/var/run/system-docker.sock", "System Docker"
			}
			cli, err := sysinit.NewClient(g.path(socket))
			if err != nil {
				return fmt.Errorf("wait-for-docker: %w", err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := sysinit.WaitPing(ctx, cli); err != nil {
				return fmt.Errorf("wait-for-docker: %s did not answer on %s within %s: %w", name, socket, timeout, err)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long (exit 1)")
	cmd.Flags().BoolVar(&system, "system", false, "wait for System Docker instead")
	return cmd
}
