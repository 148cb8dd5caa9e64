package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/berthos/berth/bootstrap"
	"github.com/spf13/cobra"
)

// newModprobeCmd is `ros modprobe` and the `modprobe` name: the kernel's
// module autoloader (/proc/sys/kernel/modprobe runs `/sbin/modprobe -q --
// NAME` for a filesystem, a link type, a netfilter table, a crypto
// algorithm ...) and udev's loader of drivers for a device's modalias.
// Names resolve through modules.dep and modules.alias of the running
// kernel; dependencies load first.
func newModprobeCmd(g *globalFlags) *cobra.Command {
	var quiet, all, blacklist, remove bool
	cmd := &cobra.Command{
		Use:   "modprobe [-q] [-a] MODULE|ALIAS [PARAM=VALUE...]",
		Short: "Load a kernel module, or the modules an alias (a device modalias, fs-vfat, ...) names, with their dependencies",
		Example: "  ros modprobe br_netfilter\n" +
			"  ros modprobe bonding max_bonds=0\n" +
			"  ros modprobe -a nf_tables xt_nat\n" +
			"  modprobe -q -- fs-vfat           # as the kernel runs it\n" +
			"  modprobe -b \"$MODALIAS\"          # as udev (mdev) runs it",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if remove {
				return fmt.Errorf("modprobe: removing modules is not supported")
			}
			dir, err := bootstrap.KernelModuleDir()
			if err != nil {
				return fmt.Errorf("modprobe: %w", err)
			}
			md, err := bootstrap.LoadModuleDeps(g.path(dir))
			if err != nil {
				return fmt.Errorf("modprobe: %w", err)
			}
			names, params := modprobeArgs(args, all)
			var w io.Writer = cmd.ErrOrStderr()
			if quiet {
				w = io.Discard
			}
			return modprobe(bootstrap.NewLogger(w), md, names, params)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "say nothing about modules that are not found or fail")
	fl.BoolVarP(&all, "all", "a", false, "every argument is a module (no parameters)")
	fl.BoolVarP(&blacklist, "use-blacklist", "b", false, "accepted for udev's sake; there is no blacklist")
	fl.BoolVarP(&remove, "remove", "r", false, "not supported")
	return cmd
}

// modprobeArgs splits modprobe's arguments: with all, every one is a
// module; otherwise the first is and the rest are its parameters.
func modprobeArgs(args []string, all bool) (names []string, params string) {
	if all {
		return args, ""
	}
	return args[:1], strings.Join(args[1:], " ")
}

// modprobe resolves each name (module or alias) and loads what it names.
// A name that resolves to nothing is an error, as in kmod.
func modprobe(log *bootstrap.Logger, md *bootstrap.ModuleDeps, names []string, params string) error {
	var mods []string
	p := map[string]string{}
	for _, n := range names {
		r := md.Resolve(n)
		if len(r) == 0 {
			log.Printf("modprobe: %s: no such module or alias", n)
			return &exitError{code: 1, err: fmt.Errorf("modprobe: module %s not found", n)}
		}
		if params != "" {
			for _, m := range r {
				p[m] = params
			}
		}
		mods = append(mods, r...)
	}
	if _, err := bootstrap.LoadModulesParams(log, md, mods, p); err != nil {
		return fmt.Errorf("modprobe: %w", err)
	}
	return nil
}
