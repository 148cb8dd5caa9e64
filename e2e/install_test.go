//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthos/berth/datasources/fake"
	"github.com/berthos/berth/platforms/cloudimage"
	"github.com/berthos/berth/platforms/install"
)

// diskBoot is how bootDisk starts qemu from a disk.
type diskBoot struct {
	disk, format string
	ovmf         string   // the UEFI firmware's code; "" boots BIOS
	net          string   // extra -netdev user options (guestfwd=...)
	memMB        int      // 0 is 1024
	args         []string // more qemu arguments
}

// bootDisk starts qemu from disk alone (no -kernel: the firmware runs the
// installed GRUB), BIOS or, with ovmf set, UEFI. Otherwise it is Boot's VM.
func bootDisk(t *testing.T, d diskBoot) *VM {
	t.Helper()
	if d.memMB == 0 {
		d.memMB = 1024
	}
	vm, args := newVM(t, d.memMB)
	netdev := fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22", vm.SSHPort)
	if d.net != "" {
		netdev += "," + d.net
	}
	args = append(args,
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
		"-drive", "file="+d.disk+",if=virtio,format="+d.format,
	)
	args = append(args, firmwareArgs(t, d.ovmf)...)
	vm.start(append(args, d.args...))
	return vm
}

// systemImageOnState is the console line of a boot that mounts the
// system image from the installed disk's state partition instead of
// unpacking it into RAM.
var systemImageOnState = regexp.MustCompile(`system image: /boot/berth/system\.sqfs on /dev/vda3 \(ext4, the state filesystem\), read from there`)

// firmwareArgs are qemu's arguments for UEFI with the OVMF code at ovmf
// (and a fresh copy of its variables); none for BIOS (ovmf "").
func firmwareArgs(t *testing.T, ovmf string) []string {
	t.Helper()
	if ovmf == "" {
		return nil
	}
	if _, err := os.Stat(ovmf); err != nil {
		t.Skipf("no OVMF firmware (apt-get install ovmf): %v", err)
	}
	vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
	b, err := os.ReadFile(strings.Replace(ovmf, "OVMF_CODE", "OVMF_VARS", 1))
	if err != nil {
		t.Skipf("OVMF variables: %v", err)
	}
	os.WriteFile(vars, b, 0o644)
	return []string{"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmf, "-drive", "if=pflash,format=raw,file=" + vars}
}

// TestISOBootsThroughItsLoader boots berth.iso as a machine does, through
// its own boot loader (isolinux from BIOS, GRUB from UEFI; no -kernel):
// the default entry's small initrd finds the system image on the CD-ROM,
// the machine reaches the ready line, and the ACPI power button ends it.
func TestISOBootsThroughItsLoader(t *testing.T) {
	img := image(t)
	iso := filepath.Join(img.Dir, "berth.iso")
	if _, err := os.Stat(iso); err != nil {
		t.Skipf("no berth.iso (make image): %v", err)
	}
	for _, fw := range []struct{ name, ovmf string }{{"BIOS", ""}, {"UEFI", "/usr/share/OVMF/OVMF_CODE.fd"}} {
		t.Run(fw.name, func(t *testing.T) {
			vm, args := newVM(t, 1024)
			args = append(args, firmwareArgs(t, fw.ovmf)...)
			vm.start(append(args, "-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0", "-cdrom", iso))
			t.Logf("ready after %s", vm.WaitReady(bootTimeout))
			if _, _, err := vm.WaitLine(regexp.MustCompile(`system image: /berth/system.sqfs on /dev/sr0 \(iso9660\), read from there`), 0, time.Second); err != nil {
				t.Errorf("the system image was not read from the CD-ROM: %v", err)
			}
			if err := vm.Monitor("system_powerdown"); err != nil {
				t.Fatal(err)
			}
			if err := vm.WaitExit(2 * time.Minute); err != nil {
				t.Errorf("after the ACPI power button: %v; want qemu to end", err)
			}
		})
	}
}

// installDisk installs the image onto a new raw disk as `ros install` does.
func installDisk(t *testing.T, img Image, platform install.Platform, cloudConfig string) string {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(disk, 2<<30)
	cc := filepath.Join(dir, "cc.yml")
	os.WriteFile(cc, []byte(cloudConfig), 0o644)
	p, err := install.NewPlan(disk, 2<<30, install.WithPlatform(platform), install.WithCloudConfig(cc),
		install.WithKernel(filepath.Join(img.Dir, "vmlinuz")), install.WithInitrd(filepath.Join(img.Dir, "initrd.small")),
		install.WithSystemImage(filepath.Join(img.Dir, "system.sqfs")),
		install.WithAppend(InstalledAppend()))
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Install(context.Background(), p); err != nil {
		t.Skipf("cannot install here (grub-pc-bin, grub-efi-amd64-bin, dosfstools, mtools, e2fsprogs): %v", err)
	}
	return disk
}

const installedConfig = `#cloud-config
hostname: berth-installed
write_files:
  - path: /opt/installed.txt
    content: "written by the installed cloud-config\n"
`

// TestInstalledDiskBoots installs to a blank disk, boots it through GRUB
// (BIOS, then UEFI with OVMF), and checks the installed kernel command
// line, the state partition and the installed cloud-config.
func TestInstalledDiskBoots(t *testing.T) {
	img := image(t)
	// busybox for User Docker comes from the host, fetched by runcmd.
	disk := installDisk(t, img, install.Generic, installedConfig+preloadRuncmd(preloadURL("10.0.2.100")))
	for _, fw := range []struct{ name, ovmf string }{{"BIOS", ""}, {"UEFI", "/usr/share/OVMF/OVMF_CODE.fd"}} {
		t.Run(fw.name, func(t *testing.T) {
			if fw.ovmf != "" {
				if _, err := os.Stat(fw.ovmf); err != nil {
					t.Skipf("no OVMF firmware (apt-get install ovmf): %v", err)
				}
			}
			vm := bootDisk(t, diskBoot{disk: disk, format: "raw", ovmf: fw.ovmf, net: preloadServer(t, "10.0.2.100", "")})
			t.Logf("ready after %s", vm.WaitReady(bootTimeout))
			cmdline := vm.MustConsole("cat /proc/cmdline")
			if !strings.Contains(cmdline, "rancher.state.dev=LABEL=RANCHER_STATE") || !strings.Contains(cmdline, "console=tty0 console=ttyS0,115200n8") || !strings.Contains(cmdline, "berth.image=state") {
				t.Errorf("kernel command line %q lacks the installed state device, consoles and berth.image=state", cmdline)
			}
			if _, _, err := vm.WaitLine(systemImageOnState, 0, time.Second); err != nil {
				t.Errorf("the system image was not read from the state partition: %v", err)
			}
			console := func(cmd string) (string, int) {
				out, code, err := vm.Console(cmd, time.Minute)
				if err != nil {
					t.Fatalf("console %q: %v", cmd, err)
				}
				return out, code
			}
			if got, _ := console("grep -c ' /mnt/state ext4 ' /proc/mounts"); strings.TrimSpace(got) != "1" {
				t.Errorf("state partition not mounted on /mnt/state (grep -c says %q)", got)
			}
			if got, _ := console("for i in $(seq 90); do [ -f /opt/installed.txt ] && break; sleep 1; done; cat /opt/installed.txt"); !strings.Contains(got, "written by the installed cloud-config") {
				t.Errorf("/opt/installed.txt = %q, want what the installed cloud-config wrote", got)
			}
			// The first boot (BIOS) leaves state; the second (UEFI) finds it.
			waitUserDocker(t, vm)
			if fw.name == "BIOS" {
				if out, code := console("echo kept > /home/rancher/kept.txt && ros config set rancher.environment.BERTH_KEPT yes && sync"); code != 0 {
					t.Errorf("leaving state: exit %d: %s", code, out)
				}
				out, code, err := vm.Console(waitBusybox+"docker run -d --restart=always --name keeper busybox sleep 1000000 && sync", 3*time.Minute)
				if err != nil || code != 0 {
					t.Errorf("docker run --restart=always: exit %d, %v: %s", code, err, out)
				}
			} else {
				if out, _ := console("cat /home/rancher/kept.txt; ros config get rancher.environment.BERTH_KEPT"); !strings.Contains(out, "kept") || !strings.Contains(out, "yes") {
					t.Errorf("state from the first boot is gone after a reboot: %q", out)
				}
				out, code, err := vm.Console("for i in $(seq 60); do [ \"$(docker inspect -f '{{.State.Running}}' keeper 2>/dev/null)\" = true ] && break; sleep 1; done; docker inspect -f '{{.State.Running}} {{.HostConfig.RestartPolicy.Name}}' keeper", 2*time.Minute)
				if err != nil || code != 0 || out != "true always" {
					t.Errorf("the --restart=always container after the reboot: exit %d, %v: %q, want \"true always\"", code, err, out)
				}
			}
			// Installing over the running system's own disk is refused.
			if got, code := console("ros install -d /dev/vda --no-reboot"); code != 2 || !strings.Contains(got, "refusing to install over it") {
				t.Errorf("ros install -d /dev/vda on the installed system: exit %d, %q; want 2 and a refusal", code, got)
			}
		})
	}
}

// TestOpenStackImage builds berth-openstack.qcow2 and boots it with a
// config drive to User Docker ready: the hostname comes from the drive's
// user-data.
func TestOpenStackImage(t *testing.T) {
	img := image(t)
	out := t.TempDir()
	src := install.Sources{Kernel: filepath.Join(img.Dir, "vmlinuz"), Initrd: filepath.Join(img.Dir, "initrd.small"), SystemImage: filepath.Join(img.Dir, "system.sqfs")}
	_, err := cloudimage.New(src,
		cloudimage.WithOutDir(out), cloudimage.WithOnly("berth-openstack.qcow2"),
		cloudimage.WithAppend(InstalledAppend())).Build(context.Background())
	if err != nil {
		t.Skipf("cannot build the image here (grub, dosfstools, mtools, e2fsprogs, qemu-utils): %v", err)
	}
	iso := filepath.Join(t.TempDir(), "config-2.iso")
	userData := "#cloud-config\nhostname: berth-openstack\nrancher:\n  resize_device: /dev/vda\n"
	if err := fake.BuildISO(iso, "config-2", fake.DriveFiles([]byte(userData))); err != nil {
		t.Fatalf("build config drive: %v", err)
	}
	// A flavor's disk is bigger than the image: 3 GiB over the 2 GiB
	// image, as an overlay qemu writes to.
	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	if o, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(out, "berth-openstack.qcow2"), disk, "3G").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, o)
	}
	vm := bootDisk(t, diskBoot{disk: disk, format: "qcow2",
		args: []string{"-drive", "file=" + iso + ",media=cdrom,readonly=on"}})
	t.Logf("ready after %s", vm.WaitReady(bootTimeout))
	if got := strings.TrimSpace(vm.MustConsole("hostname")); got != "berth-openstack" {
		t.Errorf("hostname %q, want berth-openstack from the config drive", got)
	}
	if got := vm.MustConsole("cat /proc/cmdline"); !strings.Contains(got, "rancher.cloud_init.datasources=[configdrive,openstack]") {
		t.Errorf("kernel command line %q lacks the OpenStack datasources", got)
	}
	waitUserDocker(t, vm)
	t.Run("rancher.resize_device grows the state filesystem to the disk's end", func(t *testing.T) {
		l, _, err := vm.WaitLine(regexp.MustCompile(`rancher.resize_device /dev/vda: `), 0, 3*time.Minute)
		if err != nil || !strings.Contains(l.Text, "fills it") {
			t.Fatalf("resize: %q, %v", l.Text, err)
		}
		// The state partition is the last one; df counts 1K blocks.
		out := vm.MustConsole("df -k /mnt/state | awk 'NR==2 {print $2}'")
		kb, err := strconv.Atoi(out)
		if err != nil || kb < 2800<<10 {
			t.Errorf("state filesystem: %q KiB, want about 3 GiB (the disk, not the 2 GiB image)", out)
		}
		t.Logf("after %s: %s; state filesystem %d MiB", l.At.Round(time.Millisecond), l.Text, kb>>10)
		if got := vm.MustConsole("ls /var/lib/rancher/conf >/dev/null && echo state-ok"); got != "state-ok" {
			t.Errorf("state after the resize: %q", got)
		}
	})
}

// waitInstall waits for the unattended install's last console line and
// for qemu to end by itself (the install powers the machine off).
func waitInstall(t *testing.T, vm *VM, dev string) {
	t.Helper()
	l, _, err := vm.WaitLine(regexp.MustCompile(`berth: install to `+regexp.QuoteMeta(dev)+` (done|FAILED)`), 0, bootTimeout)
	if err != nil {
		t.Fatalf("unattended install: %v", err)
	}
	t.Logf("after %s: %s", l.At.Round(time.Millisecond), l.Text)
	if strings.Contains(l.Text, "FAILED") {
		t.Fatalf("unattended install failed: %s", l.Text)
	}
	if err := vm.WaitExit(2 * time.Minute); err != nil {
		t.Fatalf("after the install: %v; want qemu to end by itself (poweroff)", err)
	}
}

// TestUnattendedInstallFromISO boots berth.iso's kernel with its install
// entry's arguments (rancher.install.device=/dev/vda
// rancher.install.force) and an http cloud_config_url: PID 1 fetches the
// cloud-config, installs to the blank disk and powers off, and the disk
// then boots through GRUB with that cloud-config.
func TestUnattendedInstallFromISO(t *testing.T) {
	img := image(t)
	iso := filepath.Join(img.Dir, "berth.iso")
	if _, err := os.Stat(iso); err != nil {
		t.Skipf("no berth.iso (make image): %v", err)
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	os.WriteFile(disk, nil, 0o644)
	os.Truncate(disk, 2<<30)
	fwd := serve(t, `#cloud-config
hostname: berth-unattended
write_files:
  - path: /opt/unattended.txt
    content: "written by the fetched cloud-config\n"
`)
	vm := Boot(t, img, VMConfig{
		MemMB: 2048, Net: fwd, Disk: disk, Args: []string{"-cdrom", iso},
		Cmdline: `rancher.install.device=/dev/vda rancher.install.force rancher.install.cloud_config_url=http://10.0.2.100/cc.yml ` +
			`rancher.install.append="` + InstalledAppend() + `"`,
	})
	waitInstall(t, vm, "/dev/vda")
	t.Logf("qemu ended by itself %s after it started", time.Since(vm.Started).Round(time.Millisecond))

	// 256 MiB: the installed disk mounts the system image from its state
	// partition, as berth.iso does from the CD-ROM, instead of holding it
	// in RAM as the whole initrd does.
	vm2 := bootDisk(t, diskBoot{disk: disk, format: "raw", memMB: 256})
	t.Logf("installed disk ready after %s (256 MiB)", vm2.WaitReady(bootTimeout))
	if _, _, err := vm2.WaitLine(systemImageOnState, 0, time.Second); err != nil {
		t.Errorf("the system image was not read from the state partition: %v", err)
	}
	if got := strings.TrimSpace(vm2.MustConsole("hostname")); got != "berth-unattended" {
		t.Errorf("hostname %q, want berth-unattended from the fetched cloud-config", got)
	}
	if got := vm2.MustConsole("for i in $(seq 90); do [ -f /opt/unattended.txt ] && break; sleep 1; done; cat /opt/unattended.txt"); got != "written by the fetched cloud-config" {
		t.Errorf("/opt/unattended.txt = %q", got)
	}
	if got := vm2.MustConsole("cat /proc/cmdline"); !strings.Contains(got, "rancher.state.dev=LABEL=RANCHER_STATE") || strings.Contains(got, "rancher.install.device") {
		t.Errorf("installed kernel command line %q: want the state device and no install", got)
	}
	waitUserDocker(t, vm2)
}

// TestPackerImage runs the Packer template's qemu build (what make
// packer-qemu does, into a temporary directory) with the cmdline
// datasource's cloud-config-url in the installed command line, and boots
// the qcow2 it gives to the ready line, System Docker's console service
// and User Docker answering.
func TestPackerImage(t *testing.T) {
	img := image(t)
	if _, err := exec.LookPath("packer"); err != nil {
		t.Skipf("packer not installed (.ci/deps): %v", err)
	}
	iso := filepath.Join(img.Dir, "berth.iso")
	if _, err := os.Stat(iso); err != nil {
		t.Skipf("no berth.iso (make image): %v", err)
	}
	dir := t.TempDir()
	outDir := filepath.Join(dir, "packer-qemu")
	template, _ := filepath.Abs("../platforms/packer/berth.json")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	accel := Accel()
	cmd := exec.CommandContext(ctx, "packer", "build", "-only=qemu", "-var", "accelerator="+accel, "-var", "cpu="+QemuCPU(accel),
		"-var", "iso="+iso, "-var", "iso_checksum=none",
		"-var", "kernel="+filepath.Join(img.Dir, "vmlinuz"), "-var", "initrd="+filepath.Join(img.Dir, "initrd"),
		"-var", "output_directory="+outDir,
		"-var", "install_append="+InstalledAppend()+" rancher.cloud_init.datasources=[cmdline] cloud-config-url=http://10.0.2.100/user-data",
		template)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "PACKER_CACHE_DIR="+filepath.Join(dir, "cache"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		serial, _ := os.ReadFile(outDir + ".serial.log")
		t.Fatalf("packer build: %v\n%s\nconsole:\n%s", err, out, serial)
	}
	qcow := filepath.Join(outDir, "berth.qcow2")
	st, err := os.Stat(qcow)
	if err != nil {
		t.Fatalf("packer build gave no qcow2: %v\n%s", err, out)
	}
	t.Logf("packer build: %s, berth.qcow2 %.1f MiB", time.Since(start).Round(time.Second), float64(st.Size())/(1<<20))

	fwd := serve(t, "#cloud-config\nhostname: berth-packer\n")
	vm := bootDisk(t, diskBoot{disk: qcow + ",snapshot=on", format: "qcow2", net: fwd})
	t.Logf("ready after %s", vm.WaitReady(bootTimeout))
	if got := strings.TrimSpace(vm.MustConsole("hostname")); got != "berth-packer" {
		t.Errorf("hostname %q, want berth-packer from the cmdline datasource's cloud-config-url", got)
	}
	ps, code, err := vm.Console("system-docker ps --format '{{.Names}}'", 2*time.Minute)
	if err != nil || code != 0 || !strings.Contains(ps, "console") {
		t.Errorf("system-docker ps: exit %d, %v: %q; want the console service", code, err, ps)
	}
	waitUserDocker(t, vm)
}
