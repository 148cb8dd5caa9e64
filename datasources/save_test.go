package datasources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/source"
	"github.com/berthos/berth/netconf"
)

func decision(id string, ud string) *Decision {
	yes := true
	nc := &netconf.Config{Interfaces: map[string]netconf.InterfaceConfig{"mac=02:00:00:00:00:01": {DHCP: &yes}}}
	return &Decision{
		Chosen:     "ec2",
		InstanceID: id,
		Sources:    []Record{{Name: "ec2", Outcome: Used}},
		Result: &source.Result{
			UserData: []byte(ud),
			Meta:     cloudinit.Metadata{InstanceID: id, Hostname: "h-" + id, SSHPublicKeys: []string{"ssh-ed25519 AAAA k"}},
			Network:  nc,
		},
	}
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	return err == nil
}

func TestSave(t *testing.T) {
	root := t.TempDir()
	// First instance: a cloud-config.
	if err := Save(root, decision("i-1", "#cloud-config\nhostname: one\n")); err != nil {
		t.Fatalf("Save = %v", err)
	}
	cc, err := os.ReadFile(filepath.Join(root, BootConfigPath))
	if err != nil || !strings.Contains(string(cc), "hostname: one") {
		t.Fatalf("boot.yml = %q, %v; want the cloud-config", cc, err)
	}
	var meta cloudinit.Metadata
	mb, err := os.ReadFile(filepath.Join(root, MetadataPath))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(mb, &meta); err != nil {
		t.Fatalf("metadata is not YAML of cloudinit.Metadata: %v\n%s", err, mb)
	}
	if meta.Hostname != "h-i-1" || meta.Network == nil || len(meta.SSHPublicKeys) != 1 {
		t.Errorf("metadata = %+v, want hostname, keys and network", meta)
	}
	d, err := LoadDecision(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.Chosen != "ec2" || d.InstanceID != "i-1" || d.PreviousInstanceID != "" {
		t.Errorf("record = chosen %q instance %q previous %q", d.Chosen, d.InstanceID, d.PreviousInstanceID)
	}
	rec, _ := os.ReadFile(filepath.Join(root, DecisionPath))
	if strings.Contains(string(rec), "hostname: one") {
		t.Errorf("decision record holds user-data:\n%s", rec)
	}

	// A new instance from the same disk, whose user-data is a script:
	// the old cloud-config must go.
	if err := Save(root, decision("i-2", "#!/bin/sh\necho two\n")); err != nil {
		t.Fatalf("Save = %v", err)
	}
	if exists(t, filepath.Join(root, BootConfigPath)) {
		t.Errorf("boot.yml of instance i-1 kept after instance i-2 saved a script")
	}
	sc, err := os.ReadFile(filepath.Join(root, ScriptPath))
	if err != nil || !strings.Contains(string(sc), "echo two") {
		t.Errorf("cloud-config-script = %q, %v", sc, err)
	}
	if d, _ := LoadDecision(root); d == nil || d.PreviousInstanceID != "i-1" || d.InstanceID != "i-2" {
		t.Errorf("record after new instance = %+v, want previous i-1, instance i-2", d)
	}

	// A run where nothing answered keeps what was saved.
	if err := Save(root, &Decision{BudgetExhausted: true}); err != nil {
		t.Fatal(err)
	}
	if !exists(t, filepath.Join(root, ScriptPath)) {
		t.Errorf("a run without an answer removed the saved script")
	}
	id, _ := os.ReadFile(filepath.Join(root, InstanceIDPath))
	if diff := cmp.Diff("i-2\n", string(id)); diff != "" {
		t.Errorf("instance-id (-want +got):\n%s", diff)
	}

	// Same instance, no user-data any more: nothing of the old is applied.
	if err := Save(root, decision("i-2", "")); err != nil {
		t.Fatal(err)
	}
	if exists(t, filepath.Join(root, ScriptPath)) || exists(t, filepath.Join(root, BootConfigPath)) {
		t.Errorf("user-data files kept after the source said there is none")
	}
}

func TestSaveRejectsUndecodableUserData(t *testing.T) {
	root := t.TempDir()
	if err := Save(root, decision("i-1", "#cloud-config\nhostname: one\n")); err != nil {
		t.Fatal(err)
	}
	err := Save(root, decision("i-1", "this is neither a cloud-config nor a script"))
	if err == nil {
		t.Fatal("Save of garbage user-data = nil, want an error")
	}
	if !exists(t, filepath.Join(root, BootConfigPath)) {
		t.Errorf("garbage user-data removed the previous boot.yml")
	}
	if !exists(t, filepath.Join(root, DecisionPath)) {
		t.Errorf("no decision record written")
	}
}
