package sysinit

import (
	"bufio"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthos/berth/bootstrap"
)

// PID1Action is how the machine ends: poweroff, reboot or halt.
type PID1Action int

// The three ways to end.
const (
	PID1Poweroff PID1Action = iota
	PID1Reboot
	PID1Halt
)

func (a PID1Action) String() string {
	return [...]string{"poweroff", "reboot", "halt"}[a]
}

// Signal is what tells PID 1 to do a.
func (a PID1Action) Signal() unix.Signal {
	return [...]unix.Signal{PID1SignalPoweroff, PID1SignalReboot, PID1SignalHalt}[a]
}

func (a PID1Action) rebootCmd() int {
	return [...]int{unix.LINUX_REBOOT_CMD_POWER_OFF, unix.LINUX_REBOOT_CMD_RESTART, unix.LINUX_REBOOT_CMD_HALT}[a]
}

func pid1ActionOf(sig unix.Signal) PID1Action {
	switch sig {
	case unix.SIGTERM, unix.SIGINT:
		return PID1Reboot
	case unix.SIGUSR1:
		return PID1Halt
	}
	return PID1Poweroff // SIGUSR2, SIGPWR
}

// PID1ActionByName maps "poweroff", "reboot", "halt" to the action.
func PID1ActionByName(name string) (PID1Action, bool) {
	switch name {
	case "poweroff":
		return PID1Poweroff, true
	case "reboot":
		return PID1Reboot, true
	case "halt":
		return PID1Halt, true
	}
	return 0, false
}

// PID1Reboot2 ends the machine right away: sync and reboot(2), no
// stopping of anything (`poweroff -f`).
func PID1Reboot2(a PID1Action) error {
	unix.Sync()
	return unix.Reboot(a.rebootCmd())
}

// pid1FinalShutdown is the end of every shutdown, once the engines are
// stopped: TERM then KILL every other process within timeout, sync
// (bounded), unmount everything deepest first (read-only remount when
// busy), and reboot(2). It does not return.
func pid1FinalShutdown(log *bootstrap.Logger, a PID1Action, timeout time.Duration) {
	log.Printf("%s: stopping every process", a)
	_ = unix.Kill(-1, unix.SIGTERM)
	// An interactive shell on a console ignores SIGTERM; it ends on the
	// hangup it would get if its terminal went away.
	_ = unix.Kill(-1, unix.SIGHUP)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && pid1OthersAlive() {
		time.Sleep(100 * time.Millisecond)
	}
	_ = unix.Kill(-1, unix.SIGKILL)
	pid1Sync(log, 5*time.Second)
	pid1UnmountAll(log)
	pid1Sync(log, 5*time.Second)
	log.Printf("%s: reboot(2)", a)
	if err := unix.Reboot(a.rebootCmd()); err != nil {
		log.Printf("reboot(2): %v", err)
	}
	select {}
}

// pid1OthersAlive says whether processes other than this one and PID 1
// (and kernel threads) remain.
func pid1OthersAlive() bool {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid := 0
		for _, c := range e.Name() {
			if c < '0' || c > '9' {
				pid = -1
				break
			}
			pid = pid*10 + int(c-'0')
		}
		if pid <= 1 || pid == self {
			continue
		}
		// Kernel threads have an empty cmdline.
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(b) > 0 {
			return true
		}
	}
	return false
}

func pid1Sync(log *bootstrap.Logger, limit time.Duration) {
	done := make(chan struct{})
	go func() { unix.Sync(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		log.Printf("sync: still running after %s, going on", limit)
	}
}

// pid1UnmountAll unmounts every mount but /, deepest first; a busy one is
// remounted read-only so its data is safe.
func pid1UnmountAll(log *bootstrap.Logger) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	var targets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && fields[1] != "/" {
			targets = append(targets, strings.ReplaceAll(fields[1], `\040`, " "))
		}
	}
	f.Close()
	sort.SliceStable(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, t := range targets {
		switch t {
		case "/proc", "/sys", "/dev", "/dev/console":
			continue
		}
		if err := unix.Unmount(t, 0); err != nil {
			if err2 := unix.Mount("", t, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err2 != nil && !strings.HasPrefix(t, "/sys") && !strings.HasPrefix(t, "/dev") {
				log.Printf("umount %s: %v", t, err)
			}
		}
	}
}
