// Command ros is Berth's one binary: PID 1 (as /init), the ros CLI, and the
// helper commands RancherOS shipped as separate names. It dispatches on the
// name it was called by (argv[0]).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/berthos/berth/sysinit"
)

// version is set at build time by the Makefile (-X main.version).
var version = "dev"

func main() {
	os.Exit(run(filepath.Base(os.Args[0]), os.Args[1:]))
}

// run dispatches on the program name and returns the exit code.
func run(name string, args []string) int {
	root := newRootCmd()
	switch name {
	// Names from RancherOS that map to a ros subcommand. Each is wired in
	// here as the package behind it lands.
	case "init":
		if os.Getpid() == 1 {
			runInit() // never returns
		}
		args = append([]string{"init"}, args...)
	case "cloud-init-save":
		args = dsArgs(args)
	case "cloud-init-execute":
		args = append([]string{"cloud-init-execute"}, args...)
	case "netconf":
		args = append([]string{"netconf", "apply"}, args...)
	case "poweroff", "reboot", "halt":
		args = append([]string{name}, args...)
	case "system-docker", "respawn", "modprobe", "wait-for-docker":
		args = append([]string{name}, args...)
	case "ntpd":
		args = append([]string{"ntp"}, args...)
	case sysinit.ShimName:
		// System Docker's containerd starting a service's shim.
		err := sysinit.RunShim(os.Args[0], args)
		fmt.Fprintln(os.Stderr, err)
		return 1
	default:
		// "ros" and any unknown name (ros.test, a renamed copy) act as the CLI.
	}
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ros:", err)
		return exitCode(err)
	}
	return 0
}

// exitError carries a specific exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}

// globalFlags are the flags every command takes.
type globalFlags struct {
	// root is the filesystem root that config, /proc/cmdline and state are
	// read from and written to; "/" on a real machine, a directory in tests.
	root string
}

// path joins p (an absolute path on the machine) onto the --root directory.
func (g *globalFlags) path(p string) string {
	return filepath.Join(g.root, p)
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "ros",
		Short:         "Berth: a minimal Linux that runs Docker",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.root, "root", "/", "filesystem root to read and write config and state under")
	root.AddCommand(
		newConfigCmd(g),
		newCloudInitExecuteCmd(g),
		newDatasourceCmd(g),
		newBootCmd(g),
		newInitCmd(g),
		newPowerCmd(g, "poweroff"), newPowerCmd(g, "reboot"), newPowerCmd(g, "halt"),
		newNetconfCmd(g),
		newServiceCmd(g), newEngineCmd(g), newConsoleCmd(g), newTLSCmd(g),
		newSystemDockerCmd(g), newRespawnCmd(g), newDiskLinksCmd(g),
		newInstallCmd(g), newModprobeCmd(g), newNTPCmd(g), newWaitForDockerCmd(g),
	)
	return root
}
