package sysinit

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthos/berth/bootstrap"
	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/netconf"
	"github.com/berthos/berth/platforms/install"
)

// The last line of an unattended install on the console, with the device
// (and the error): Packer's template and the e2e tests wait for one of
// them, and tell a good image from a failed one by which.
const (
	PID1InstallDoneLine   = "install to %s done; powering off"
	PID1InstallFailedLine = "install to %s FAILED: %v; powering off"
)

// pid1InstallLimit bounds the whole unattended install, so a hung step
// still ends the machine (under TCG it takes well under a minute).
const pid1InstallLimit = 30 * time.Minute

// unattendedInstall is the boot phase of an install asked for on the
// kernel command line (rancher.install.device=/dev/vda, from the ISO's
// install entry or an image pipeline): it installs to that device and
// powers off, whether the install worked or not. A pipeline (Packer waits
// for the machine to stop) must end either way, and tells the two apart
// by the last install line on the console; a live system carrying on
// after a failure would leave it waiting until its timeout.
//
// It runs after the system image and /etc are there (grub-mkimage,
// mke2fs and the rest live in /usr) and before the state disk phase,
// which would otherwise format a blank /dev/vda (rancher.state.autoformat)
// or mount the RANCHER_STATE of an earlier install: the very disk to
// install to. The network, needed only for an http(s) cloud_config_url,
// it brings up itself with the network phase's code. Without
// rancher.install.device it does nothing and the boot goes on.
func (b *pid1Boot) unattendedInstall(ctx context.Context) error {
	u := pid1Unattended{
		log:     b.log,
		network: b.installNetwork,
		wait:    pid1WaitPaths,
		run:     install.Run,
	}
	if proxy, err := b.early.Rancher.Network.Proxy(); err != nil {
		b.log.Printf("install: %v; fetching the cloud-config direct", err)
	} else {
		u.proxy = proxy
	}
	if !u.do(ctx, b.cmdline) {
		return nil
	}
	pid1RequestPoweroff()
	return nil
}

// installNetwork brings the network up as the boot would later (the
// kernel command line over the defaults: DHCP on eth*), for fetching the
// cloud-config.
func (b *pid1Boot) installNetwork(ctx context.Context) error {
	if err := b.loadConfig(ctx); err != nil {
		b.log.Printf("install: %v", err)
	}
	return b.network(ctx)
}

// pid1Unattended is the unattended install's steps; tests replace them.
type pid1Unattended struct {
	log     *bootstrap.Logger
	network func(ctx context.Context) error
	// wait waits up to limit for any of paths to exist.
	wait func(ctx context.Context, limit time.Duration, paths ...string) bool
	run  func(ctx context.Context, req install.Request, out, progress io.Writer, confirm func(*install.Plan) error) error
	// proxy fetches an http(s) cloud_config_url (the kernel command
	// line's rancher.network proxies); nil is direct.
	proxy netconf.ProxyFunc
}

// do runs the install cmdline asks for and prints its last line; it says
// whether one was asked for (and so whether the machine is to power off).
func (u pid1Unattended) do(ctx context.Context, cmdline string) bool {
	dev, ok := cloudinit.CmdlineValue(cmdline, "rancher.install.device")
	if !ok || dev == "" {
		return false
	}
	start := time.Now()
	if err := u.install(ctx, cmdline); err != nil {
		u.log.Printf(PID1InstallFailedLine, dev, err)
	} else {
		u.log.Printf(PID1InstallDoneLine+" (took %s)", dev, time.Since(start).Round(time.Second))
	}
	return true
}

func (u pid1Unattended) install(ctx context.Context, cmdline string) error {
	ctx, cancel := context.WithTimeout(ctx, pid1InstallLimit)
	defer cancel()
	un, _, err := install.ParseUnattended(cmdline)
	if err != nil {
		return err
	}
	req := un.Request("/")
	req.Proxy = u.proxy
	u.log.Printf("install: rancher.install.device=%s on the kernel command line: installing Berth (%s), then powering off", req.Device, req.Platform)
	if req.NeedsNetwork() {
		if err := u.network(ctx); err != nil {
			// One link failing need not stop the fetch; its error says more.
			u.log.Printf("install: network: %v (going on)", err)
		}
	}
	// The drivers are loaded; their devices appear when the bus is probed.
	if !u.wait(ctx, 30*time.Second, req.Device) {
		return fmt.Errorf("%s: no such device after 30 s", req.Device)
	}
	if _, err := os.Stat(install.KernelPath); err != nil {
		// The kernel and initrd to install come from the boot CD.
		u.wait(ctx, 30*time.Second, "/dev/sr0", "/dev/sr1")
	}
	w := &pid1Lines{log: u.log}
	return u.run(ctx, req, w, w, nil)
}

// pid1WaitPaths waits up to limit for any of paths to exist.
func pid1WaitPaths(ctx context.Context, limit time.Duration, paths ...string) bool {
	deadline := time.Now().Add(limit)
	for {
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pid1RequestPoweroff asks this process's own signal handler for a
// poweroff, the path `poweroff` takes (stop what was started, sync,
// unmount, reboot(2)), and never returns: the boot must not go on to the
// state disk, which now is the installed disk, while the machine stops.
func pid1RequestPoweroff() {
	_ = unix.Kill(os.Getpid(), PID1Poweroff.Signal())
	select {}
}
