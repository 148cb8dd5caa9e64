package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallCmd(t *testing.T) {
	for _, tool := range []string{"grub-mkimage", "mkfs.fat", "mcopy", "mke2fs", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/deps): %v", tool, err)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	writeFile(t, img, "")
	if err := os.Truncate(img, 400<<20); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "k"), "kernel")
	writeFile(t, filepath.Join(dir, "i"), "initrd")
	writeFile(t, filepath.Join(dir, "cc.yml"), "#cloud-config\nhostname: installed\n")
	args := []string{"install", "-d", img, "--kernel", filepath.Join(dir, "k"), "--initrd", filepath.Join(dir, "i"),
		"-c", filepath.Join(dir, "cc.yml"), "-t", "openstack", "-a", "rancher.debug", "--no-reboot"}

	out, errOut, code := ros(t, "", args...)
	if code != 0 {
		t.Fatalf("ros install: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Install Berth (openstack) to " + img,
		"Kernel command line: rancher.state.dev=LABEL=RANCHER_STATE rancher.state.wait rancher.cloud_init.datasources=[configdrive,openstack] console=tty0 console=ttyS0,115200n8 rootfstype=ramfs panic=10 cryptomgr.notests rancher.debug",
		"Berth is installed on " + img,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	got, err := exec.Command("debugfs", "-R", "cat /var/lib/rancher/conf/cloud-config.yml", img+"?offset="+"35651584").Output()
	if err != nil || string(got) != "#cloud-config\nhostname: installed\n" {
		t.Errorf("cloud-config on the installed disk = %q, %v", got, err)
	}

	// A second install over it is refused without -f, and goes with -f.
	_, errOut, code = ros(t, "", args...)
	if code != 2 || !strings.Contains(errOut, "holds a GPT partition table; refusing to install over it (use -f to force)") {
		t.Errorf("install over an installed disk: exit %d, %q; want 2 and a refusal", code, errOut)
	}
	if _, errOut, code = ros(t, "", append(args, "-f")...); code != 0 {
		t.Errorf("install -f over an installed disk: exit %d: %s", code, errOut)
	}

	for _, bad := range [][]string{
		{"install", "-d", img, "-t", "azure", "--no-reboot"},
		{"install", "-d", filepath.Join(dir, "missing.img"), "--no-reboot"},
		{"install", "-d", img, "-c", filepath.Join(dir, "missing.yml"), "--no-reboot"},
		{"install", "--no-reboot"},
	} {
		if _, _, code := ros(t, "", bad...); code == 0 {
			t.Errorf("ros %v: exit 0, want an error", bad)
		}
	}
}

func TestInstallConfirm(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false, "maybe\n": false} {
		var out strings.Builder
		got, err := confirm(strings.NewReader(in), &out)
		if err != nil || got != want {
			t.Errorf("confirm(%q) = %v, %v; want %v", in, got, err, want)
		}
		if out.String() != "Continue? [y/N] " {
			t.Errorf("prompt %q", out.String())
		}
	}
}

func TestInstallFromCmdline(t *testing.T) {
	for _, tool := range []string{"grub-mkimage", "mkfs.fat", "mcopy", "mke2fs", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/deps): %v", tool, err)
		}
	}
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "proc/cmdline"), "console=ttyS0\n")
	out, errOut, code := ros(t, "", "--root", root, "install", "--from-cmdline")
	if code != 0 || !strings.Contains(out, "nothing to install") {
		t.Errorf("no rancher.install.device: exit %d, %q %q", code, out, errOut)
	}
	img := filepath.Join(root, "disk.img")
	writeFile(t, img, "")
	os.Truncate(img, 400<<20)
	writeFile(t, filepath.Join(root, "boot/vmlinuz"), "kernel")
	writeFile(t, filepath.Join(root, "boot/initrd"), "initrd")
	writeFile(t, filepath.Join(root, "cc.yml"), "#cloud-config\nhostname: unattended\n")
	writeFile(t, filepath.Join(root, "proc/cmdline"), "console=ttyS0 rancher.install.device="+img+
		" rancher.install.cloud_config_url=file://"+filepath.Join(root, "cc.yml")+" rancher.install.type=gce\n")
	out, errOut, code = ros(t, "", "--root", root, "install", "--from-cmdline", "--no-reboot")
	if code != 0 || !strings.Contains(out, "Install Berth (gce) to "+img) {
		t.Fatalf("unattended install: exit %d, %q %q", code, out, errOut)
	}
	got, err := exec.Command("debugfs", "-R", "cat /var/lib/rancher/conf/cloud-config.yml", img+"?offset=35651584").Output()
	if err != nil || string(got) != "#cloud-config\nhostname: unattended\n" {
		t.Errorf("cloud-config on the disk = %q, %v", got, err)
	}
}
