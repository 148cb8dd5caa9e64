package sysinit

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthos/berth/bootstrap"
)

// PID 1 is two processes. Process 1 itself only switches the root, mounts
// the early filesystems, starts the boot process (`ros _boot`), reaps every
// orphan (containerd-shims are re-parented to it) and forwards power
// signals. The boot process does everything else: Go's os/exec reaps its
// own children with wait4(pid), which a process that reaps with wait4(-1)
// would steal from it.

// Power signals, the convention of busybox and sysvinit: `poweroff`,
// `reboot` and `halt` send these to PID 1, which forwards them.
const (
	PID1SignalPoweroff = unix.SIGUSR2
	PID1SignalReboot   = unix.SIGTERM
	PID1SignalHalt     = unix.SIGUSR1
)

// pid1TimelineEnv carries PID 1's own phases to the boot process.
const pid1TimelineEnv = "BERTH_PID1_TIMELINE"

// pid1KeepCgroup is the empty cgroup PID 1 creates at boot and keeps (see
// bootstrap.PrimeCgroups).
const pid1KeepCgroup = "berth.boot"

// pid1SystemLoopEnv names the loop device holding the system squashfs.
const pid1SystemLoopEnv = "BERTH_SYSTEM_LOOP"

// pid1BootArg is the hidden ros command that runs the boot process.
const pid1BootArg = "_boot"

// RunPID1 is process 1. It never returns: when the boot process dies
// unexpectedly it starts an emergency shell on the console, and a power
// signal with no boot process left ends in reboot(2).
func RunPID1() {
	// Handlers first: a fast child can signal before they would exist.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR, unix.SIGHUP)
	// Ctrl-Alt-Del becomes SIGINT to PID 1 instead of an instant reboot.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	log := bootstrap.NewLogger(pid1Console())
	tl := bootstrap.NewTimeline()
	tl.Mark("pid1 start")
	sysLoop := os.Getenv(pid1SystemLoopEnv)
	if bootstrap.NeedSwitchRoot() {
		// The system squashfs gets its loop device before the switch, so
		// the switch does not copy it.
		end := tl.Begin("system image attach")
		dev, err := pid1AttachSystemImage(log)
		end(err)
		if err != nil {
			log.Printf("system image: %v", err)
		}
		sysLoop = dev
		end = tl.Begin("switch root")
		err = bootstrap.SwitchRoot(log, bootstrap.SystemImage)
		end(err)
		if err != nil {
			log.Printf("%v (going on in the initramfs; containers cannot pivot_root)", err)
		}
	}
	end := tl.Begin("mounts")
	err := bootstrap.MountAll(log, bootstrap.EarlyMounts())
	if err == nil {
		err = bootstrap.MakeSymlinks(bootstrap.EarlySymlinks())
	}
	if err == nil {
		err = bootstrap.ShareMounts()
	}
	end(err)
	end = tl.Begin("cgroups")
	cerr := bootstrap.PrimeCgroups("/sys/fs/cgroup", pid1KeepCgroup)
	end(cerr)
	log.SetOutput(pid1Console())
	pid1Stdio()
	if err != nil {
		log.Printf("early mounts: %v", err)
	}
	if cerr != nil {
		log.Printf("cgroups: %v (going on)", cerr)
	}

	data, _ := json.Marshal(tl.Snapshot())
	env := append(os.Environ(), pid1TimelineEnv+"="+string(data), pid1SystemLoopEnv+"="+sysLoop,
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux")
	var child *os.Process
	start := func() {
		cmd := exec.Command("/bin/ros", "init", pid1BootArg)
		cmd.Args[0] = "ros"
		cmd.Env = env
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			log.Printf("start boot process: %v", err)
			child = pid1EmergencyShell(log, fmt.Errorf("start boot process: %w", err))
			return
		}
		child = cmd.Process
	}
	start()

	for sig := range sigs {
		switch sig {
		case unix.SIGCHLD:
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if err != nil || pid <= 0 {
					break
				}
				if child != nil && pid == child.Pid {
					log.Printf("boot process %d ended (%s)", pid, pid1Status(ws))
					child = pid1EmergencyShell(log, fmt.Errorf("the boot process ended: %s", pid1Status(ws)))
				}
			}
		case unix.SIGHUP:
			// Reload the config and reconcile the services: the boot
			// process owns them.
			if child != nil {
				_ = child.Signal(sig)
			}
		default:
			if child != nil {
				_ = child.Signal(sig)
				continue
			}
			// No boot process to shut down in order: do what is left.
			pid1FinalShutdown(log, pid1ActionOf(sig.(unix.Signal)), 10*time.Second)
		}
	}
	select {}
}

func pid1Status(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

// pid1Console opens /dev/console for writing; stderr when it cannot.
func pid1Console() *os.File {
	f, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return os.Stderr
	}
	return f
}

// pid1Stdio points fds 0-2 at the console (the kernel may have started
// PID 1 without them when the initramfs had no /dev/console).
func pid1Stdio() {
	f, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for fd := 0; fd < 3; fd++ {
		_ = unix.Dup2(int(f.Fd()), fd)
	}
	f.Close()
}

// pid1EmergencyShell shows err on the console and starts a busybox shell
// there; the returned process is waited for like the boot process, so
// leaving the shell starts a new one.
func pid1EmergencyShell(log *bootstrap.Logger, err error) *os.Process {
	log.Printf("EMERGENCY: %v", err)
	log.Printf("starting an emergency shell on the console; `reboot -f` or `poweroff -f` to leave")
	time.Sleep(time.Second) // a crash loop must not spin
	cmd := exec.Command("/bin/sh", "-l")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux", "PS1=(berth emergency) # "}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		log.Printf("emergency shell: %v", err)
		return nil
	}
	return cmd.Process
}

// pid1AttachSystemImage loads the loop and squashfs modules and binds the
// system squashfs of the initramfs to a loop device, returning its path
// ("" when the initramfs has none: see pid1Boot.systemImage).
func pid1AttachSystemImage(log *bootstrap.Logger) (string, error) {
	if err := (bootstrap.Mount{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755"}).Apply(); err != nil {
		return "", err
	}
	if _, err := os.Stat(bootstrap.SystemImage); err != nil {
		// Booted from berth.iso: the boot process finds the image on the
		// medium once the switch is done.
		log.Printf("system image: not in the initramfs (%v); looking for it on the boot media later", err)
		return "", nil
	}
	dir, err := bootstrap.KernelModuleDir()
	if err != nil {
		return "", err
	}
	md, err := bootstrap.LoadModuleDeps(dir)
	if err != nil {
		return "", err
	}
	if _, err := bootstrap.LoadModules(log, md, []string{"loop", "squashfs"}); err != nil {
		return "", err
	}
	return bootstrap.AttachLoop(bootstrap.SystemImage, true)
}
