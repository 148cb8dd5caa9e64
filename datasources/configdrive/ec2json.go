package configdrive

import (
	"encoding/json"
	"fmt"

	"github.com/berthos/berth/cloudinit"
)

// mergeEC2 fills addresses OpenStack's own metadata lacks from the
// drive's ec2/latest/meta-data.json.
func mergeEC2(m *cloudinit.Metadata, b []byte) error {
	var e struct {
		LocalIPv4  string `json:"local-ipv4"`
		PublicIPv4 string `json:"public-ipv4"`
		Hostname   string `json:"local-hostname"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("parse ec2/latest/meta-data.json: %w", err)
	}
	if m.PrivateIPv4 == "" {
		m.PrivateIPv4 = e.LocalIPv4
	}
	if m.PublicIPv4 == "" {
		m.PublicIPv4 = e.PublicIPv4
	}
	if m.LocalHostname == "" {
		m.LocalHostname = e.Hostname
	}
	return nil
}
