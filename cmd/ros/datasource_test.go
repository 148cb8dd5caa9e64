package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthos/berth/datasources"
	"github.com/berthos/berth/datasources/fake"
)

func rosDS(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	code := 0
	if err := root.Execute(); err != nil {
		errb.WriteString(err.Error())
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

func dsFile(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

type fetchJSON struct {
	Decision datasources.Decision `json:"decision"`
	Result   struct {
		Meta struct {
			Hostname      string   `json:"hostname"`
			SSHPublicKeys []string `json:"ssh_public_keys"`
		} `json:"meta"`
	} `json:"result"`
	UserData string `json:"user_data"`
	Saved    bool   `json:"saved"`
}

// TestDatasourceFetchFromEachFake is the "done when": fetch --json
// gets user-data, hostname and SSH keys from each fake.
func TestDatasourceFetchFromEachFake(t *testing.T) {
	ud := func(src string) []byte { return []byte("#cloud-config\nhostname: ud-" + src + "\n") }
	ec2 := httptest.NewServer(&fake.EC2{UserData: ud("ec2"), Meta: fake.EC2Meta(), RequireToken: true})
	defer ec2.Close()
	gm := fake.GCEMeta()
	gm["instance/attributes/user-data"] = string(ud("gce"))
	gce := httptest.NewServer(&fake.GCE{Meta: gm})
	defer gce.Close()
	ost := httptest.NewServer(&fake.OpenStack{Files: fake.OpenStackFiles(ud("openstack"))})
	defer ost.Close()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ec2.URL)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(gce.URL, "http://"))
	t.Setenv("BERTH_OPENSTACK_METADATA_URL", ost.URL)

	drive := filepath.Join(t.TempDir(), "cd.iso")
	if err := fake.BuildISO(drive, "config-2", fake.DriveFiles(ud("configdrive"))); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		list, hostname string
		keys           int
		setup          func(t *testing.T, root string)
	}{
		{"ec2", "ip-192-0-2-10.ec2.internal", 1, nil},
		{"gce", "berth-1.c.berth-test.internal", 2, nil},
		{"openstack", "berth-1.novalocal", 1, nil},
		{"configdrive", "berth-1.novalocal", 1, func(t *testing.T, root string) {
			dsFile(t, filepath.Join(root, "sys/class/block/sr0/dev"), []byte("11:0\n"))
			if err := os.Symlink(drive, filepath.Join(root, "dev/sr0")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			root := t.TempDir()
			dsFile(t, filepath.Join(root, "proc/cmdline"), []byte("console=ttyS0\n"))
			if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(t, root)
			}
			out, errs, code := rosDS(t, "--root", root, "datasource", "fetch", "--json", "--datasources", tt.list, "--budget", "5s")
			if code != 0 {
				t.Fatalf("fetch exit %d: %s", code, errs)
			}
			var got fetchJSON
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("fetch --json output is not JSON: %v\n%s", err, out)
			}
			if got.Decision.Chosen != tt.list || !got.Saved {
				t.Errorf("chosen = %q saved = %v, want %s saved\n%s", got.Decision.Chosen, got.Saved, tt.list, out)
			}
			if got.UserData != string(ud(tt.list)) {
				t.Errorf("user_data = %q, want %q", got.UserData, ud(tt.list))
			}
			if got.Result.Meta.Hostname != tt.hostname || len(got.Result.Meta.SSHPublicKeys) != tt.keys {
				t.Errorf("meta = %+v, want hostname %s and %d keys", got.Result.Meta, tt.hostname, tt.keys)
			}
			boot, err := os.ReadFile(filepath.Join(root, datasources.BootConfigPath))
			if err != nil || string(boot) == "" || !strings.Contains(string(boot), "ud-"+tt.list) {
				t.Errorf("saved boot.yml = %q, %v", boot, err)
			}
			ex, _, code := rosDS(t, "--root", root, "datasource", "explain")
			if code != 0 || !strings.Contains(ex, "used: "+tt.list) {
				t.Errorf("explain (exit %d):\n%s", code, ex)
			}
		})
	}
}

func TestDatasourceFetchListFromConfig(t *testing.T) {
	ost := httptest.NewServer(&fake.OpenStack{Files: fake.OpenStackFiles([]byte("#cloud-config\nhostname: x\n"))})
	defer ost.Close()
	t.Setenv("BERTH_OPENSTACK_METADATA_URL", ost.URL)
	root := t.TempDir()
	dsFile(t, filepath.Join(root, "proc/cmdline"), []byte("rancher.cloud_init.datasources=[configdrive,openstack] rancher.cloud_init.timeout=3\n"))
	out, errs, code := rosDS(t, "--root", root, "datasource", "fetch", "--dry-run")
	if code != 0 {
		t.Fatalf("fetch exit %d: %s", code, errs)
	}
	for _, want := range []string{"configdrive", "absent", "used: openstack", "of a 3s budget"} {
		if !strings.Contains(out, want) {
			t.Errorf("fetch output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(root, datasources.DecisionPath)); err == nil {
		t.Errorf("--dry-run saved a decision record")
	}
}

func TestDatasourceListAndExplainWithoutRecord(t *testing.T) {
	root := t.TempDir()
	dsFile(t, filepath.Join(root, "sys/class/dmi/id/sys_vendor"), []byte("Google\n"))
	out, _, code := rosDS(t, "--root", root, "datasource", "list")
	if code != 0 || !strings.Contains(out, "looks like: gce") || !strings.Contains(out, "configdrive[:DEVICE]") {
		t.Errorf("list (exit %d):\n%s", code, out)
	}
	_, errs, code := rosDS(t, "--root", root, "datasource", "explain")
	if code == 0 || !strings.Contains(errs, "fetch") {
		t.Errorf("explain without a record: exit %d, %q; want an error pointing at fetch", code, errs)
	}
}

func TestCloudInitSaveName(t *testing.T) {
	root := t.TempDir()
	dsFile(t, filepath.Join(root, "ud.yml"), []byte("#cloud-config\nhostname: saved\n"))
	if code := run("cloud-init-save", []string{"--root", root, "--datasources", "file:/ud.yml", "--json"}); code != 0 {
		t.Fatalf("cloud-init-save exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(root, datasources.BootConfigPath))
	if err != nil || !strings.Contains(string(b), "hostname: saved") {
		t.Errorf("boot.yml = %q, %v", b, err)
	}
}
