package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/berthos/berth/bootstrap"
)

func newBootCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "What happened during this boot",
	}
	var svg string
	timeline := &cobra.Command{
		Use:   "timeline",
		Short: "Print each boot phase's start and duration (seconds since the kernel started)",
		Example: "  ros boot timeline\n" +
			"  ros boot timeline --svg /tmp/boot.svg",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			phases, err := bootstrap.ReadTimeline(g.path(bootstrap.TimelinePath))
			if err != nil {
				return err
			}
			if svg != "" {
				f, err := os.Create(svg)
				if err != nil {
					return fmt.Errorf("boot timeline: %w", err)
				}
				if err := bootstrap.WriteSVG(f, phases); err != nil {
					f.Close()
					return fmt.Errorf("boot timeline: write %s: %w", svg, err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("boot timeline: %w", err)
				}
			}
			return bootstrap.WriteTable(cmd.OutOrStdout(), phases)
		},
	}
	timeline.Flags().StringVar(&svg, "svg", "", "also draw the timeline as an SVG chart into this file")
	cmd.AddCommand(timeline)
	return cmd
}
