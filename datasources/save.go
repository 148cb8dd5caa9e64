package datasources

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/internal/atomicfile"
)

// Paths Save writes, relative to the root.
const (
	BootConfigPath  = "var/lib/rancher/conf/cloud-config.d/boot.yml"
	ScriptPath      = "var/lib/rancher/conf/cloud-config-script"
	MetadataPath    = "var/lib/rancher/conf/metadata"
	DecisionPath    = "var/lib/rancher/cache/datasource-decision.json"
	InstanceIDPath  = "var/lib/rancher/cache/instance-id"
	UserDataRawPath = "var/lib/rancher/cache/user-data"
)

// Save writes a run's outcome under root, each file atomically:
//
//   - always the decision record (DecisionPath);
//   - when a source answered: its user-data, classified with
//     cloudinit.DecodeUserData, as cloud-config (BootConfigPath) and/or
//     a script (ScriptPath), removing whichever kind it did not give (so
//     a new instance never runs an old instance's user-data); the raw
//     user-data (UserDataRawPath); the metadata as YAML (MetadataPath);
//     and last the instance-id, so a save cut short is redone next boot.
//
// When no source answered, the files of an earlier boot are kept.
// User-data that does not decode is an error; the metadata and the record
// are still written and the previous user-data files are left alone.
func Save(root string, d *Decision) error {
	if d == nil {
		return errors.New("save datasource result: no decision")
	}
	if b, err := os.ReadFile(filepath.Join(root, InstanceIDPath)); err == nil {
		d.PreviousInstanceID = strings.TrimSpace(string(b))
	}
	var udErr error
	if r := d.Result; r != nil {
		udErr = saveUserData(root, r.UserData)
		meta := r.Meta
		if meta.Network == nil {
			meta.Network = r.Network
		}
		mb, err := yaml.Marshal(&meta)
		if err != nil {
			return fmt.Errorf("save metadata: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(root, MetadataPath), mb, 0o600); err != nil {
			return fmt.Errorf("save metadata: %w", err)
		}
	}
	db, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("save decision record: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(root, DecisionPath), append(db, '\n'), 0o644); err != nil {
		return fmt.Errorf("save decision record: %w", err)
	}
	if udErr != nil {
		return udErr
	}
	if d.Result != nil && d.InstanceID != "" {
		if err := atomicfile.Write(filepath.Join(root, InstanceIDPath), []byte(d.InstanceID+"\n"), 0o644); err != nil {
			return fmt.Errorf("save instance-id: %w", err)
		}
	}
	return nil
}

func saveUserData(root string, raw []byte) error {
	var cc, script []byte
	if len(strings.TrimSpace(string(raw))) > 0 {
		ud, err := cloudinit.DecodeUserData(raw)
		if err != nil {
			return fmt.Errorf("save user-data: %w", err)
		}
		cc = ud.CloudConfig
		if len(ud.Scripts) > 0 {
			// cloud-init-execute runs one script, as RancherOS did.
			script = ud.Scripts[0].Body
		}
	}
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{{BootConfigPath, cc, 0o600}, {ScriptPath, script, 0o700}, {UserDataRawPath, raw, 0o600}} {
		p := filepath.Join(root, f.path)
		if len(f.data) == 0 {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("save user-data: remove stale %s: %w", f.path, err)
			}
			continue
		}
		if err := atomicfile.Write(p, f.data, f.perm); err != nil {
			return fmt.Errorf("save user-data: %w", err)
		}
	}
	return nil
}

// LoadDecision reads the last saved decision record.
func LoadDecision(root string) (*Decision, error) {
	b, err := os.ReadFile(filepath.Join(root, DecisionPath))
	if err != nil {
		return nil, fmt.Errorf("load decision record: %w", err)
	}
	var d Decision
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("load decision record %s: %w", DecisionPath, err)
	}
	return &d, nil
}
