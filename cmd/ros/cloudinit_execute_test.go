package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCloudInitExecute: the argv0 name applies the merged config under --root.
func TestCloudInitExecute(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "var/lib/rancher/conf/cloud-config.d/boot.yml"),
		"#cloud-config\nhostname: from-user-data\nwrite_files:\n  - path: /etc/motd\n    content: welcome\nssh_authorized_keys:\n  - ssh-ed25519 AAAA k@x\nruncmd:\n  - [touch, "+filepath.Join(dir, "ran")+"]\n")
	if code := run("cloud-init-execute", []string{"--root", dir}); code != 0 {
		t.Fatalf("cloud-init-execute exit %d", code)
	}
	for path, want := range map[string]string{
		"etc/hostname":                      "from-user-data\n",
		"etc/motd":                          "welcome",
		"home/rancher/.ssh/authorized_keys": "ssh-ed25519 AAAA k@x\n",
		"ran":                               "",
	} {
		got, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
}

// TestCloudInitExecuteFailedStep: a failing runcmd is logged and the rest
// is applied, and the command still exits 0 (the console comes after
// it), unless --strict.
func TestCloudInitExecuteFailedStep(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "var/lib/rancher/conf/cloud-config.d/boot.yml"),
		"#cloud-config\nruncmd:\n  - [/nonexistent/command]\nwrite_files:\n  - path: /etc/motd\n    content: welcome\n")
	_, stderr, code := ros(t, "", "--root", dir, "cloud-init-execute")
	if code != 0 || !strings.Contains(stderr, "some steps failed") || !strings.Contains(stderr, "/nonexistent/command") {
		t.Errorf("cloud-init-execute: exit %d, stderr %q; want 0 and the failed step named", code, stderr)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "etc/motd")); err != nil || string(got) != "welcome" {
		t.Errorf("write_files after a failed runcmd: %q, %v", got, err)
	}
	if _, _, code := ros(t, "", "--root", dir, "cloud-init-execute", "--strict"); code != 1 {
		t.Errorf("cloud-init-execute --strict: exit %d, want 1", code)
	}
}
