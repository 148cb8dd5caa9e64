package main

import (
	"bufio"
	"errors"
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
	kernel, initrd, systemImage, iso      string
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
	fl.StringVar(&f.systemImage, "system-image", "", "system image to install beside --initrd, when that is the small one (default: /boot/berth/system.sqfs beside /boot/initrd, else from the boot ISO)")
	fl.StringVar(&f.iso, "iso", "", "take the kernel, initrd and system image from this Berth ISO (default: /dev/sr0 when needed)")
	fl.BoolVar(&f.fromCmdline, "from-cmdline", false, "install as rancher.install.device (and .cloud_config_url, .type, .append, .force) on the kernel command line say, then power off")
	return cmd
}

func runInstall(cmd *cobra.Command, g *globalFlags, f installFlags) error {
	req := install.Request{
		Device: f.device, Platform: install.Platform(f.platform), Append: f.append, CloudConfig: f.cloudConfig,
		Force: f.force, Kernel: f.kernel, Initrd: f.initrd, SystemImage: f.systemImage, ISO: f.iso, Root: g.root,
	}
	return doInstall(cmd, req, f)
}

// doInstall runs req, asking first when a terminal is attached (unless
// forced or unattended), then reboots (or, unattended, powers off).
func doInstall(cmd *cobra.Command, req install.Request, f installFlags) error {
	out := cmd.OutOrStdout()
	interactive := false
	if in, ok := cmd.InOrStdin().(*os.File); ok {
		interactive = isTerminal(in)
	}
	var ask func(*install.Plan) error
	if !req.Force && interactive && !f.fromCmdline {
		ask = func(p *install.Plan) error {
			ok, err := confirm(cmd.InOrStdin(), out)
			if err != nil {
				return fmt.Errorf("install: %w", err)
			}
			if !ok {
				return &exitError{code: 1, err: fmt.Errorf("install: not confirmed; %s is unchanged", p.Device)}
			}
			return nil
		}
	}
	if err := install.Run(cmd.Context(), req, out, cmd.ErrOrStderr(), ask); err != nil {
		if errors.Is(err, install.ErrRefused) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	fmt.Fprintf(out, "Berth is installed on %s.\n", req.Device)
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

// runUnattendedInstall is `ros install --from-cmdline`: the install PID 1
// itself runs when the kernel command line has rancher.install.device,
// for a shell on a live system; flags given too (-f, --kernel, --iso)
// add to it.
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
	req := u.Request(g.root)
	req.Force = req.Force || f.force
	req.Kernel, req.Initrd, req.SystemImage, req.ISO = f.kernel, f.initrd, f.systemImage, f.iso
	return doInstall(cmd, req, f)
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
