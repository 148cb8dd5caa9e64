//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthos/berth/datasources/fake"
)

// milestone is a console line a boot reaches; its time is taken from the
// host clock (seconds since qemu started) when the line arrived.
type milestone struct {
	name string
	re   string
}

var milestones = []milestone{
	{"kernel first line", `Linux version`},
	{"PID 1 (Run /init)", `Run /init as init process`},
	{"network up (early)", `phase network \(early\) done`},
	{"datasource answered", `datasource \S+ answered`},
	{"System Docker ready", `msg="engine ready" engine=system-docker`},
	{"boot complete (ready line)", regexp.QuoteMeta(ReadyLine)},
	{"User Docker ready", `User Docker ready`},
}

// TestBenchBoot boots the EC2 case and prints when each milestone came,
// each system service's start, PID 1's RSS and the memory used; then
// boots again with less memory (BENCH_MEM, MiB, default "1024 512 384
// 256") until the EC2 boot no longer comes up with SSH working. `make
// bench-boot`. BENCH_ISO=1 boots as berth.iso does (the small initrd, the
// system image read from the CD-ROM) instead of with the whole initrd.
func TestBenchBoot(t *testing.T) {
	img := image(t)
	iso := ""
	if os.Getenv("BENCH_ISO") == "1" {
		iso = filepath.Join(img.Dir, "berth.iso")
	}
	mems := strings.Fields(os.Getenv("BENCH_MEM"))
	if len(mems) == 0 {
		mems = []string{"1024", "512", "384", "256"}
	}
	smallest := ""
	for _, m := range mems {
		mb, err := strconv.Atoi(m)
		if err != nil {
			t.Fatalf("BENCH_MEM: %v", err)
		}
		ok := t.Run(fmt.Sprintf("%dMiB", mb), func(t *testing.T) { benchOnce(t, img, mb, iso) })
		if !ok {
			break
		}
		smallest = m
	}
	t.Logf("smallest -m at which the EC2 boot came up and ran a command over SSH: %s MiB (accel %s)", smallest, Accel())
}

// TestSmallMachineFromISO boots as berth.iso does, with the 256
// MiB (the kernel leaves 205 of them), which the whole initrd's boot
// cannot do (its system image sits in RAM): PID 1 mounts the system image
// from the CD-ROM, swaps to compressed RAM (rancher.zram.size's auto),
// and the EC2 case comes up with SSH and docker run working.
func TestSmallMachineFromISO(t *testing.T) {
	img := image(t)
	iso := filepath.Join(img.Dir, "berth.iso")
	vm := benchOnce(t, img, 256, iso)
	if _, _, err := vm.WaitLine(regexp.MustCompile(`system image: /berth/system.sqfs on /dev/sr0 \(iso9660\), read from there`), 0, time.Second); err != nil {
		t.Errorf("the system image was not read from the CD-ROM: %v", err)
	}
	if _, _, err := vm.WaitLine(regexp.MustCompile(`swap on /dev/zram0: up to \d+ MiB of compressed RAM, for \d+ MiB of memory \(rancher.zram.size: auto\)`), 0, time.Second); err != nil {
		t.Errorf("no zram swap on a 256 MiB machine: %v", err)
	}
}

// benchOnce boots the EC2 case with mb MiB (as berth.iso does when iso
// is set), prints its milestones and memory, and checks SSH and docker
// run.
func benchOnce(t *testing.T, img Image, mb int, iso string) *VM {
	key, pub := sshKey(t)
	fwd := preloadServer(t, preloadAt, "")
	imds := &fake.EC2{UserData: []byte(userData(pub, preloadURL(preloadAt))), Meta: fake.EC2Meta(), RequireToken: true}
	vm := Boot(t, img, VMConfig{
		MemMB: mb, ISO: iso,
		Net:     metadataNet + "," + serveAt(t, "169.254.169.254", imds) + "," + fwd,
		Cmdline: "rancher.cloud_init.datasources=[ec2]",
		Args:    []string{"-smbios", "type=1,manufacturer=Amazon EC2,product=t3.micro"},
	})
	ready := vm.WaitReady(bootTimeout)
	if _, _, err := vm.WaitLine(regexp.MustCompile(`User Docker ready`), 0, 3*time.Minute); err != nil {
		t.Logf("%d MiB: %v", mb, err)
	}
	logTimeline(t, vm, ready)
	var b strings.Builder
	how := "the whole initrd"
	if iso != "" {
		how = "the small initrd, the system image on the CD-ROM"
	}
	fmt.Fprintf(&b, "EC2 boot, %d MiB, 2 vCPUs, %s, %s; seconds since qemu start:\n", mb, Accel(), how)
	for _, m := range milestones {
		l, _, err := vm.WaitLine(regexp.MustCompile(m.re), 0, time.Second)
		if err != nil {
			fmt.Fprintf(&b, "  %-28s  -\n", m.name)
			continue
		}
		fmt.Fprintf(&b, "  %-28s %7.2f\n", m.name, l.At.Seconds())
	}
	svc := regexp.MustCompile(`msg="service (started|done)|msg="one-shot service done".*service=(\S+)|msg="service started".*service=(\S+)`)
	vm.mu.Lock()
	for _, l := range vm.lines {
		if svc.MatchString(l.Text) {
			if m := regexp.MustCompile(`service=(\S+)`).FindStringSubmatch(l.Text); m != nil {
				fmt.Fprintf(&b, "  service %-20s %7.2f\n", m[1], l.At.Seconds())
			}
		}
	}
	vm.mu.Unlock()
	cpu := regexp.MustCompile(`User Docker ready .*; (CPUs .*)\)`)
	if l, _, err := vm.WaitLine(cpu, 0, time.Second); err == nil {
		fmt.Fprintf(&b, "  until User Docker ready: %s\n", cpu.FindStringSubmatch(l.Text)[1])
	}
	rss, _, _ := vm.Console(`grep VmRSS /proc/1/status; for p in /proc/[0-9]*; do grep -q _boot $p/cmdline 2>/dev/null && grep VmRSS $p/status; done`, time.Minute)
	free, _, _ := vm.Console("free -m | sed -n 2p", time.Minute)
	if f := strings.Fields(free); len(f) > 1 {
		free = strings.Join(f[1:], " ")
	}
	fmt.Fprintf(&b, "  PID 1 and boot process RSS: %s\n  memory after boot (free -m, MiB: total used free shared buff/cache available): %s\n",
		strings.ReplaceAll(rss, "\n", " / "), free)
	if out, err := vm.SSH(t.Context(), key, "true", 3*time.Minute); err != nil {
		t.Errorf("%d MiB: ssh: %v %s", mb, err, out)
	}
	out, code, err := vm.Console(waitBusybox+"docker run --rm busybox echo ok", 3*time.Minute)
	if err != nil || code != 0 || out != "ok" {
		t.Errorf("%d MiB: docker run --rm busybox echo ok: exit %d, %v: %q", mb, code, err, out)
	}
	t.Log(b.String())
	_, _, _ = vm.Console("poweroff", 10*time.Second)
	_ = vm.WaitExit(2 * time.Minute)
	return vm
}
