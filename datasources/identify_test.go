package datasources

import (
	"os"
	"path/filepath"
	"testing"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIdentify(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		cloud string
	}{
		{"ec2 nitro", map[string]string{"sys/class/dmi/id/sys_vendor": "Amazon EC2\n", "sys/class/dmi/id/bios_vendor": "Amazon EC2\n"}, "ec2"},
		{"ec2 xen", map[string]string{"sys/class/dmi/id/sys_vendor": "Xen\n", "sys/hypervisor/uuid": "ec2a1b2c-0000-0000-0000-000000000000\n"}, "ec2"},
		{"gce", map[string]string{"sys/class/dmi/id/sys_vendor": "Google\n", "sys/class/dmi/id/product_name": "Google Compute Engine\n"}, "gce"},
		{"openstack", map[string]string{"sys/class/dmi/id/sys_vendor": "OpenStack Foundation\n", "sys/class/dmi/id/product_name": "OpenStack Nova\n"}, "openstack"},
		{"qemu", map[string]string{"sys/class/dmi/id/sys_vendor": "QEMU\n"}, ""},
		{"nothing", map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tt.files)
			p := Identify(root)
			if p.Cloud != tt.cloud {
				t.Errorf("Identify().Cloud = %q (%s), want %q", p.Cloud, p.CloudWhy, tt.cloud)
			}
			if p.Cloud != "" && p.CloudWhy == "" {
				t.Errorf("Identify() names %s without evidence", p.Cloud)
			}
		})
	}
}
