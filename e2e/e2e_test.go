//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// bootTimeout is how long a boot may take to print the ready line under
// TCG on a loaded 2-core machine.
const bootTimeout = 6 * time.Minute

func image(t *testing.T) Image {
	t.Helper()
	dir := os.Getenv("BERTH_IMAGE")
	if dir == "" {
		dir = "../out/image"
	}
	for _, f := range []string{"vmlinux", "initrd"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Skipf("no image in %s (run `make image`, or `make e2e` which builds it): %v", dir, err)
		}
	}
	abs, _ := filepath.Abs(dir)
	return Image{Dir: abs}
}

// sshKey makes an ed25519 key pair and returns the private key path and
// the public key.
func sshKey(t *testing.T) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed (apt-get install openssh-client)")
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(pub))
}

// serve serves body at every path on a loopback port; the guest reaches
// it at 10.0.2.100:80 through the returned guestfwd option.
func serve(t *testing.T, body string) string {
	t.Helper()
	return serveAt(t, "10.0.2.100", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}))
}

// serveAt serves h on a loopback port; the guest reaches it at addr:80
// through the returned guestfwd option (qemu runs nc per connection).
func serveAt(t *testing.T, addr string, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Logf("host http: %s %s", r.Method, r.RequestURI)
		h.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	nc := "nc"
	if _, err := exec.LookPath("nc"); err != nil {
		nc = "busybox nc"
	}
	return fmt.Sprintf("guestfwd=tcp:%s:80-cmd:%s 127.0.0.1 %d", addr, nc, l.Addr().(*net.TCPAddr).Port)
}

// logTimeline prints the guest's boot timeline, so regressions show in
// every test's output.
func logTimeline(t *testing.T, vm *VM, ready time.Duration) {
	t.Helper()
	out, code, err := vm.Console("ros boot timeline", time.Minute)
	if err != nil || code != 0 {
		t.Errorf("ros boot timeline: exit %d, %v: %s", code, err, out)
		return
	}
	t.Logf("ready line %.2f s after qemu start; boot timeline (s since kernel start):\n%s", ready.Seconds(), out)
}

// TestCmdline boots with the kernel command line as the datasource: a
// cloud-config-url served from the host, cc. and rancher. keys.
func TestCmdline(t *testing.T) {
	img := image(t)
	key, pub := sshKey(t)
	userData := fmt.Sprintf(`#cloud-config
hostname: from-user-data
ssh_authorized_keys:
  - %s
write_files:
  - path: /var/lib/rancher/e2e-written
    permissions: "0644"
    content: |
      written by write_files
  - path: /test
    content: test
mounts:
  - [LABEL=E2ESWAP, "", swap, ""]
  - [LABEL=E2EDATA, /mnt/e2e-data, "", "ro,noatime"]
  - ["/test", "/home/rancher/test", "", "bind"]
bootcmd:
  - "grep -q ' /mnt/e2e-data ' /proc/mounts && echo after the mounts > /run/e2e-bootcmd"
%s    http_proxy: http://192.0.2.3:3128
    https_proxy: http://192.0.2.3:3129
    no_proxy: localhost,192.0.2.0/24
  modules: [ip_vs]
  sysctl:
    kernel.domainname: e2e.test
    vm.swappiness: 17
  environment:
    A: A
    BB: BB
    BC: BC
  services:
    env:
      image: berth/base:${VERSION}
      command: env
      labels:
        io.rancher.os.scope: system
        io.rancher.os.before: console
      environment:
        - A
        - B*
`, pub, e2eDNS)
	// The user-data and the busybox image for User Docker, from the host.
	fwd := preloadServer(t, "10.0.2.100", userData+preloadRuncmd(preloadURL("10.0.2.100")))
	// An NVMe disk (EBS on EC2 Nitro): its driver is not in the boot's
	// default list; coldplug loads it by the device's modalias.
	// It holds a swap area, and a virtio disk an ext4 filesystem: the
	// user-data's mounts name both by label.
	nvme := filepath.Join(t.TempDir(), "nvme.img")
	if err := os.WriteFile(nvme, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkswap", "-L", "E2ESWAP", nvme).CombinedOutput(); err != nil {
		t.Fatalf("mkswap: %v: %s", err, out)
	}
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "hello"), []byte("from the data disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-L", "E2EDATA", "-d", dataDir, data, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	vm := Boot(t, img, VMConfig{
		Args: []string{"-drive", "file=" + nvme + ",if=none,id=nv0,format=raw", "-device", "nvme,drive=nv0,serial=e2envme",
			"-drive", "file=" + data + ",if=virtio,format=raw"},
		Net: fwd,
		Cmdline: "rancher.cloud_init.datasources=[cmdline] cloud-config-url=http://10.0.2.100/user-data " +
			// The command line beats user-data.
			"cc.hostname=e2e-cmdline rancher.zram.size=64M " +
			"rancher.network.interfaces.eth0.address=10.0.2.15/24 rancher.network.interfaces.eth0.gateway=10.0.2.2",
	})
	ready := vm.WaitReady(bootTimeout)
	logTimeline(t, vm, ready)

	t.Run("hostname from cc.hostname beats user-data", func(t *testing.T) {
		if got := vm.MustConsole("hostname"); got != "e2e-cmdline" {
			t.Errorf("hostname = %q, want %q", got, "e2e-cmdline")
		}
	})
	t.Run("NVMe disk found by coldplug", func(t *testing.T) {
		out, code, err := vm.Console("ls /dev/nvme0n1 && cat /sys/class/nvme/nvme0/serial", time.Minute)
		if err != nil || code != 0 || !strings.Contains(out, "e2envme") {
			t.Errorf("NVMe disk: exit %d, %v: %q; want /dev/nvme0n1 with serial e2envme", code, err, out)
		}
	})
	t.Run("the kernel loads a module it asks for after the boot", func(t *testing.T) {
		// PID 1 turns the autoloader off while the initramfs's modules
		// load, and on again. A macvlan link makes the kernel ask for
		// rtnl-link-macvlan, which nothing loaded at boot.
		out, code, err := vm.Console("cat /proc/sys/kernel/modprobe; ip link add link eth0 name e2emv0 type macvlan && grep -c '^macvlan ' /proc/modules; ip link del e2emv0", time.Minute)
		if err != nil || code != 0 || out != "/sbin/modprobe\n1" {
			t.Errorf("autoload: exit %d, %v: %q; want /sbin/modprobe and macvlan loaded", code, err, out)
		}
	})
	t.Run("rancher.modules from user-data (RancherOS test_27)", func(t *testing.T) {
		if _, _, err := vm.WaitLine(regexp.MustCompile(`rancher.modules: loaded [1-9]\d* kernel modules for ip_vs`), 0, time.Second); err != nil {
			t.Error(err)
		}
		out, code, err := vm.Console("grep -c '^ip_vs ' /proc/modules", time.Minute)
		if err != nil || code != 0 || out != "1" {
			t.Errorf("ip_vs in /proc/modules: exit %d, %v: %q; want it loaded", code, err, out)
		}
	})
	t.Run("cgroups primed before the first container", func(t *testing.T) {
		// PID 1 switches the kernel's memcg and cpuset keys while it runs
		// alone (bootstrap.PrimeCgroups); the kept cgroup must still be
		// there once the containers run.
		out, code, err := vm.Console("cat /sys/fs/cgroup/cgroup.subtree_control; cat /sys/fs/cgroup/berth.boot/cgroup.controllers", time.Minute)
		if err != nil || code != 0 || strings.Count(out, "memory") != 2 || strings.Count(out, "cpuset") != 2 {
			t.Errorf("cgroups: exit %d, %v: %q; want memory and cpuset enabled in the root and in berth.boot", code, err, out)
		}
	})
	t.Run("rancher.sysctl from user-data (RancherOS test_20)", func(t *testing.T) {
		// vm.swappiness is one PID 1 sets for the zram swap first: the
		// user's value comes later and stays.
		out, code, err := vm.Console("cat /proc/sys/kernel/domainname /proc/sys/vm/swappiness", time.Minute)
		if err != nil || code != 0 || out != "e2e.test\n17" {
			t.Errorf("sysctl: exit %d, %v: %q; want e2e.test and 17", code, err, out)
		}
	})
	t.Run("rancher.network's proxies in System Docker and User Docker (RancherOS test_17)", func(t *testing.T) {
		const want = "http://192.0.2.3:3128 http://192.0.2.3:3129 localhost,192.0.2.0/24"
		for _, engine := range []string{"system-docker", "docker"} {
			out, code, err := vm.Console(engine+" info --format '{{.HTTPProxy}} {{.HTTPSProxy}} {{.NoProxy}}'", time.Minute)
			if err != nil || code != 0 || out != want {
				t.Errorf("%s info: exit %d, %v: %q; want %q", engine, code, err, out, want)
			}
		}
	})
	t.Run("rancher.environment into a service, by name and by glob (RancherOS test_11)", func(t *testing.T) {
		out, code, err := vm.Console("system-docker logs env 2>&1 | grep -E '^(A|B[A-Z]*)=' | sort", time.Minute)
		if err != nil || code != 0 || out != "A=A\nBB=BB\nBC=BC" {
			t.Errorf("env service's environment: exit %d, %v: %q; want A=A, BB=BB and BC=BC", code, err, out)
		}
		// io.rancher.os.before: console starts env first.
		out, code, err = vm.Console("system-docker inspect -f '{{.State.StartedAt}}' env console", time.Minute)
		started := strings.Fields(out)
		if err != nil || code != 0 || len(started) != 2 {
			t.Fatalf("system-docker inspect env console: exit %d, %v: %q", code, err, out)
		}
		env, err1 := time.Parse(time.RFC3339Nano, started[0])
		console, err2 := time.Parse(time.RFC3339Nano, started[1])
		if err1 != nil || err2 != nil || !env.Before(console) {
			t.Errorf("env started at %s, console at %s (%v, %v); want env first", started[0], started[1], err1, err2)
		}
	})
	t.Run("zram swap from rancher.zram.size", func(t *testing.T) {
		out, code, err := vm.Console("cat /proc/swaps", time.Minute)
		if err != nil || code != 0 || !regexp.MustCompile(`(?m)^/dev/zram0\s+partition\s+65532\s`).MatchString(out) {
			t.Errorf("/proc/swaps: exit %d, %v: %q; want /dev/zram0 of 64 MiB (65532 KiB after the header)", code, err, out)
		}
	})
	t.Run("mounts and bootcmd from user-data", func(t *testing.T) {
		out, code, err := vm.Console("cat /proc/swaps; grep ' /mnt/e2e-data ' /proc/mounts; cat /mnt/e2e-data/hello /run/e2e-bootcmd", time.Minute)
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^/dev/nvme0n1\s+partition\s+\d+\s+\d+\s+-\d+$`), // the disk swap, below zram
			regexp.MustCompile(`(?m)^/dev/vd[a-z] /mnt/e2e-data ext4 ro,.*noatime`),
			regexp.MustCompile(`(?m)^from the data disk$`),
			regexp.MustCompile(`(?m)^after the mounts$`),
		} {
			if err != nil || code != 0 || !want.MatchString(out) {
				t.Errorf("exit %d, %v: %q; want a line matching %s", code, err, out, want)
			}
		}
		// The console container (SSH) sees the mount too.
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if got, err := vm.SSH(ctx, key, "cat /mnt/e2e-data/hello", 3*time.Minute); err != nil || got != "from the data disk" {
			t.Errorf("ssh cat /mnt/e2e-data/hello = %q, %v", got, err)
		}
		// RancherOS's test_23: a file write_files makes, bound into
		// rancher's home, seen over SSH.
		if got, err := vm.SSH(ctx, key, "cat /home/rancher/test; echo; grep -c ' /home/rancher/test ' /proc/mounts", 3*time.Minute); err != nil || got != "test\n1" {
			t.Errorf("ssh cat /home/rancher/test = %q, %v; want test, and one mount there", got, err)
		}
	})
	t.Run("kernel modules from the system image", func(t *testing.T) {
		// The initramfs carries only the boot medium's drivers; the rest
		// (bridge, loaded since) are the system image's, bound over them.
		out, code, err := vm.Console(`grep " /lib/modules/" /proc/mounts; grep -c "^bridge " /proc/modules`, time.Minute)
		if err != nil || code != 0 || !strings.Contains(out, "squashfs ro") || !strings.HasSuffix(out, "\n1") {
			t.Errorf("modules: exit %d, %v: %q; want /lib/modules/RELEASE a read-only squashfs and bridge loaded", code, err, out)
		}
	})
	t.Run("static address from rancher.network", func(t *testing.T) {
		if got := vm.MustConsole("ip -4 -o addr show dev eth0"); !strings.Contains(got, "10.0.2.15/24") {
			t.Errorf("eth0 addresses = %q, want 10.0.2.15/24", got)
		}
	})
	t.Run("datasource", func(t *testing.T) {
		got, code, err := vm.Console("ros datasource explain", time.Minute)
		if err != nil || code != 0 || !strings.Contains(got, "cmdline") {
			t.Errorf("ros datasource explain: exit %d, %v: %q, want it to name cmdline", code, err, got)
		}
	})
	t.Run("write_files", func(t *testing.T) {
		out, code, err := vm.Console("for i in $(seq 60); do [ -f /var/lib/rancher/e2e-written ] && break; sleep 1; done; cat /var/lib/rancher/e2e-written", 2*time.Minute)
		if err != nil || code != 0 || out != "written by write_files" {
			t.Errorf("write_files: exit %d, %v: %q", code, err, out)
		}
	})
	t.Run("ssh key from user-data", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		// As rancher: /dev/null and /dev/tty stay writable for everyone.
		got, err := vm.SSH(ctx, key, "echo > /dev/null && test -w /dev/tty && test -w /dev/zero && hostname", 3*time.Minute)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if got != "e2e-cmdline" {
			t.Errorf("ssh hostname = %q, want e2e-cmdline", got)
		}
	})
	t.Run("system services", func(t *testing.T) {
		out, code, err := vm.Console("system-docker ps --format '{{.Names}}'", time.Minute)
		if err != nil || code != 0 {
			t.Fatalf("system-docker ps: exit %d, %v: %s", code, err, out)
		}
		for _, want := range []string{"console", "docker"} {
			if !strings.Contains(out, want) {
				logs, _, _ := vm.Console("system-docker logs --tail 15 "+want+" 2>&1", time.Minute)
				t.Errorf("system-docker ps = %q, want a %s service; its log:\n%s", out, want, logs)
			}
		}
	})
	engineChecks(t, vm)
	t.Run("a service enabled after boot is brought up and supervised", func(t *testing.T) {
		out, code, err := vm.Console("ros service enable acpid && ros service up acpid", 2*time.Minute)
		if err != nil || code != 0 || !strings.Contains(out, "acpid") {
			t.Fatalf("ros service enable acpid && ros service up acpid: exit %d, %v: %s", code, err, out)
		}
		// ros service up has PID 1 reload: acpid is now one of its own.
		if _, _, err := vm.WaitLine(regexp.MustCompile(`reload: created .*unchanged \[.*acpid`), 0, time.Minute); err != nil {
			t.Fatalf("PID 1 did not reload: %v", err)
		}
		out, code, err = vm.Console(killAndWaitBack("acpid"), 2*time.Minute)
		if err != nil || code != 0 {
			t.Errorf("acpid after system-docker kill: exit %d, %v: %s", code, err, out)
		}
	})
	t.Run("poweroff ends qemu", func(t *testing.T) {
		_, _, _ = vm.Console("poweroff", 10*time.Second)
		if err := vm.WaitExit(2 * time.Minute); err != nil {
			t.Errorf("poweroff: %v", err)
		}
		// Every default service ends on SIGTERM (udev's mdev did not, and
		// held the poweroff 10 s), and so does the console's shell.
		for _, re := range []string{`did not end on SIGTERM`, `autologin .*: signal: killed`} {
			if l, _, err := vm.WaitLine(regexp.MustCompile(re), 0, 0); err == nil {
				t.Errorf("poweroff had to kill: %s", l.Text)
			}
		}
		if l, _, err := vm.WaitLine(regexp.MustCompile(`poweroff: stopped engines \(`), 0, 0); err == nil {
			t.Logf("%s", l.Text)
		}
	})
}
