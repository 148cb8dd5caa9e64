package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newConfigCmd is `ros config`. The cloudinit work fills it in.
func newConfigCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Read, change and validate the cloud-config",
	}
	_ = g
	cmd.RunE = func(*cobra.Command, []string) error { return errors.New("config: not yet") }
	return cmd
}
