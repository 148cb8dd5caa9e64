package main

import (
	"fmt"
	"os"

	"github.com/berthos/berth/sysinit"
	"github.com/spf13/cobra"
)

// newDiskLinksCmd is `ros disk-links`: keep /dev/disk/by-label and
// /dev/disk/by-uuid. The udev service runs it once with --all and then
// from mdev (which sets MDEV and ACTION) for each block device event.
func newDiskLinksCmd(g *globalFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:    "disk-links [--all | DEVICE...]",
		Short:  "Make /dev/disk/by-label and by-uuid links (for every disk, the named ones, or $MDEV)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			dev := g.path("/dev")
			if all {
				return sysinit.LinkAllDisks(g.path("/sys"), dev)
			}
			if len(args) == 0 {
				name := os.Getenv("MDEV")
				if name == "" {
					return &exitError{code: 2, err: fmt.Errorf("disk-links: name a device, use --all, or run from mdev (MDEV unset)")}
				}
				if os.Getenv("ACTION") == "remove" {
					return sysinit.UnlinkDisk(dev, name)
				}
				args = []string{name}
			}
			for _, a := range args {
				if err := sysinit.LinkDisk(dev, a); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every block device in /sys/class/block")
	return cmd
}
