package packer

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func validate(t *testing.T, template string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{"ec2_raw": "", "iso": "", "kernel": "", "initrd": ""}
	args := []string{"validate", "-var", "iso_checksum=sha256:" + strings.Repeat("0", 64)}
	for k := range vars {
		p := filepath.Join(dir, k)
		os.WriteFile(p, []byte(k), 0o644)
		args = append(args, "-var", k+"="+p)
	}
	cmd := exec.Command("packer", append(args, template)...)
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1", "PACKER_CACHE_DIR="+filepath.Join(dir, "cache"), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPackerValidate(t *testing.T) {
	if _, err := exec.LookPath("packer"); err != nil {
		t.Skipf("packer not installed (Debian's packer, in .ci/deps): %v", err)
	}
	if out, err := validate(t, "berth.json"); err != nil {
		t.Fatalf("packer validate berth.json: %v\n%s", err, out)
	}
	// The check can fail: a template without the qemu build's ISO does not pass.
	b, _ := os.ReadFile("berth.json")
	broken := filepath.Join(t.TempDir(), "broken.json")
	os.WriteFile(broken, []byte(strings.Replace(string(b), `"iso_url"`, `"iso_urls_typo"`, 1)), 0o644)
	if out, err := validate(t, broken); err == nil {
		t.Errorf("packer validate accepted a template with a typo:\n%s", out)
	}
}

// TestTemplate checks what the builds do, as the README describes them.
func TestTemplate(t *testing.T) {
	b, err := os.ReadFile("berth.json")
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Builders []struct {
			Name, Type    string
			QemuArgs      [][]string `json:"qemuargs"`
			Communicator  string
			Format        string
			AMIRootDevice struct {
				SourceDeviceName string `json:"source_device_name"`
			} `json:"ami_root_device"`
			LaunchBlockDeviceMappings []struct {
				DeviceName string `json:"device_name"`
			} `json:"launch_block_device_mappings"`
		}
		Provisioners []struct {
			Type   string
			Only   []string
			Inline []string
		}
	}
	if err := json.Unmarshal(b, &tpl); err != nil {
		t.Fatalf("berth.json: %v", err)
	}
	if len(tpl.Builders) != 2 || tpl.Builders[0].Name != "qemu" || tpl.Builders[1].Name != "amazon-ebs" {
		t.Fatalf("builds %+v, want qemu and amazon-ebs", tpl.Builders)
	}
	q := tpl.Builders[0]
	var appendArg string
	for _, a := range q.QemuArgs {
		if a[0] == "-append" {
			appendArg = a[1]
		}
	}
	if !strings.Contains(appendArg, "rancher.install.device=/dev/vda") || q.Communicator != "none" || q.Format != "qcow2" {
		t.Errorf("qemu build: -append %q, communicator %q, format %q; want an unattended install to /dev/vda that powers off, qcow2", appendArg, q.Communicator, q.Format)
	}
	a := tpl.Builders[1]
	if a.AMIRootDevice.SourceDeviceName != "/dev/sdf" || len(a.LaunchBlockDeviceMappings) != 1 || a.LaunchBlockDeviceMappings[0].DeviceName != "/dev/sdf" {
		t.Errorf("amazon-ebs build does not make the AMI from the second volume /dev/sdf: %+v", a)
	}
	var wrote bool
	for _, p := range tpl.Provisioners {
		if strings.Contains(strings.Join(p.Inline, "\n"), "dd if=/tmp/berth-ec2.raw") && len(p.Only) == 1 && p.Only[0] == "amazon-ebs" {
			wrote = true
		}
	}
	if !wrote {
		t.Error("no amazon-ebs provisioner writes berth-ec2.raw to the second volume")
	}
	// The install powers off whether it worked or not: the qemu build
	// must read the console to tell.
	var checks bool
	for _, p := range tpl.Provisioners {
		script := strings.Join(p.Inline, "\n")
		if p.Type == "shell-local" && len(p.Only) == 1 && p.Only[0] == "qemu" &&
			strings.Contains(script, "berth: install to .* done") && strings.Contains(script, "FAILED") && strings.Contains(script, ".serial.log") {
			checks = true
		}
	}
	if !checks {
		t.Error("no qemu provisioner fails the build when the console says the install FAILED")
	}
}
