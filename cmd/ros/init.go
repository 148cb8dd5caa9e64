package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berthos/berth/sysinit"
)

// runInit is PID 1 (the kernel runs /init, a link to ros).
func runInit() {
	defer func() {
		// PID 1 must never exit: the kernel would panic.
		if r := recover(); r != nil {
			fmt.Fprintln(os.Stderr, "berth: PID 1 panic:", r)
			select {}
		}
	}()
	sysinit.RunPID1()
}

func newInitCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Run as PID 1 (the kernel starts /init; anywhere else this refuses)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Getpid() != 1 {
				return fmt.Errorf("init: not process 1 (pid %d); use poweroff, reboot or halt to control the machine", os.Getpid())
			}
			runInit()
			return nil
		},
	}
	boot := &cobra.Command{
		Use:    "_boot",
		Hidden: true,
		Short:  "The boot process PID 1 starts",
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Getppid() != 1 {
				return fmt.Errorf("_boot: only PID 1 starts this")
			}
			sysinit.RunPID1Boot(version)
			return nil
		},
	}
	cmd.AddCommand(boot)
	return cmd
}

func newPowerCmd(g *globalFlags, name string) *cobra.Command {
	action, _ := sysinit.PID1ActionByName(name)
	var force bool
	cmd := &cobra.Command{
		Use:   name,
		Short: "Stop User Docker, the services and System Docker, then " + name + " the machine",
		Example: "  " + name + "        # orderly, within rancher.shutdown_timeout\n" +
			"  " + name + " -f     # now: sync and " + name + " without stopping anything",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if force {
				return sysinit.PID1Reboot2(action)
			}
			if err := unix.Kill(1, action.Signal()); err != nil {
				return fmt.Errorf("%s: signal PID 1: %w", name, err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not stop anything: sync and call reboot(2) now")
	return cmd
}
