package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/berthos/berth/platforms/install"
	"github.com/berthos/berth/sysinit"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// installFlags are `ros install`'s flags.
type installFlags struct {
	device, cloudConfig, platform, append string
	noReboot, force                       bool
	kernel, initrd, iso                   string
	// fromCmdline takes the install from rancher.install.* on the kernel
	// command line and powers off afterwards.
	fromCmdline bool
}

func newInstallCmd(g *globalFlags) *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "install -d DEVICE",
		Short: "Install Berth to a disk: GPT, GRUB (BIOS and UEFI), kernel, initrd and a RANCHER_STATE partition",
		Example: "  ros install -d /dev/vda -c cloud-config.yml            # asks before writing\n" +
			"  ros install -d /dev/nvme1n1 -t amazon -f --no-reboot   # no questions\n" +
			"  ros install -d disk.img -t openstack --iso berth.iso -f --no-reboot\n" +
			"  ros install --from-cmdline   # rancher.install.device=/dev/vda on the kernel command line; powers off",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.fromCmdline {
				return runUnattendedInstall(cmd, g, f)
			}
			if f.device == "" {
				return fmt.Errorf("install: -d DEVICE is required")
			}
			return runInstall(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.device, "device", "d", "", "the disk to install to (everything on it is lost)")
	fl.StringVarP(&f.cloudConfig, "cloud-config", "c", "", "cloud-config file to put at /var/lib/rancher/conf/cloud-config.yml")
	fl.StringVarP(&f.platform, "type", "t", "generic", "platform: generic, amazon, gce or openstack (datasources and consoles)")
	fl.StringVarP(&f.append, "append", "a", "", "extra kernel arguments for the installed system")
	fl.BoolVar(&f.noReboot, "no-reboot", false, "do not reboot after installing")
	fl.BoolVarP(&f.force, "force", "f", false, "install over a mounted or non-empty device, and do not ask")
	fl.StringVar(&f.kernel, "kernel", "", "kernel to install (default: /boot/vmlinuz, else from the boot ISO)")
	fl.StringVar(&f.initrd, "initrd", "", "initrd to install (default: /boot/initrd, else from the boot ISO)")
	fl.StringVar(&f.iso, "iso", "", "take the kernel and initrd from this Berth ISO (default: /dev/sr0 when needed)")
	fl.BoolVar(&f.fromCmdline, "from-cmdline", false, "install as rancher.install.device (and .cloud_config_url, .type, .append, .force) on the kernel command line say, then power off")
	return cmd
}

func runInstall(cmd *cobra.Command, g *globalFlags, f installFlags) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	platform, err := install.ParsePlatform(f.platform)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if f.cloudConfig != "" {
		if _, err := os.Stat(f.cloudConfig); err != nil {
			return fmt.Errorf("install: cloud-config: %w", err)
		}
	}
	size, err := install.DeviceSize(f.device)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if !f.force {
		if err := install.Check(f.device, ""); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("install: %w", err)}
		}
	}
	tmp, err := os.MkdirTemp("", "ros-install-")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer os.RemoveAll(tmp)
	kernel, initrd := f.kernel, f.initrd
	switch {
	case f.iso != "":
		kernel, initrd, err = install.FromISO(f.iso, tmp)
	case kernel == "" || initrd == "":
		kernel, initrd, err = install.FindSources(g.root, tmp, "/dev/sr0", "/dev/sr1")
	}
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	plan, err := install.NewPlan(f.device, size,
		install.WithPlatform(platform), install.WithAppend(f.append),
		install.WithKernel(kernel), install.WithInitrd(initrd), install.WithCloudConfig(f.cloudConfig))
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	fmt.Fprint(out, plan)
	interactive := false
	if in, ok := cmd.InOrStdin().(*os.File); ok {
		interactive = isTerminal(in)
	}
	if !f.force && interactive && !f.fromCmdline {
		ok, err := confirm(cmd.InOrStdin(), out)
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		if !ok {
			return &exitError{code: 1, err: fmt.Errorf("install: not confirmed; %s is unchanged", f.device)}
		}
	}
	if err := install.Install(ctx, plan, install.WithProgress(cmd.ErrOrStderr())); err != nil {
		return err
	}
	fmt.Fprintf(out, "Berth is installed on %s.\n", f.device)
	if f.noReboot {
		return nil
	}
	what := "reboot"
	if f.fromCmdline {
		what = "poweroff"
	}
	fmt.Fprintf(out, "Now: %s.\n", what)
	action, _ := sysinit.PID1ActionByName(what)
	if err := unix.Kill(1, action.Signal()); err != nil {
		return fmt.Errorf("install: %s: %w", what, err)
	}
	return nil
}

// runUnattendedInstall is `ros install --from-cmdline`: PID 1 runs it when
// the kernel command line has rancher.install.device.
func runUnattendedInstall(cmd *cobra.Command, g *globalFlags, f installFlags) error {
	b, err := os.ReadFile(g.path("/proc/cmdline"))
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	u, ok, err := install.ParseUnattended(string(b))
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if !ok {
		fmt.Fprintln(cmd.OutOrStdout(), "No rancher.install.device on the kernel command line: nothing to install.")
		return nil
	}
	f.device, f.platform, f.append, f.force = u.Device, string(u.Platform), u.Append, f.force || u.Force
	if u.CloudConfigURL != "" {
		tmp, err := os.MkdirTemp("", "ros-install-cc-")
		if err != nil {
			return fmt.Errorf("install: %w", err)
		}
		defer os.RemoveAll(tmp)
		f.cloudConfig = tmp + "/cloud-config.yml"
		if err := install.FetchCloudConfig(cmd.Context(), u.CloudConfigURL, f.cloudConfig); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	return runInstall(cmd, g, f)
}

// confirm asks before writing; only "y" or "yes" goes on.
func confirm(in io.Reader, out io.Writer) (bool, error) {
	fmt.Fprint(out, "Continue? [y/N] ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// isTerminal says whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
