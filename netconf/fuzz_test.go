package netconf

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzValidateThenPlan: Validate never panics, and whatever it accepts
// MakePlan can plan.
func FuzzValidateThenPlan(f *testing.F) {
	for _, s := range []string{
		"interfaces:\n  eth0: {address: 192.0.2.10/24, gateway: 192.0.2.1}\n",
		"interfaces:\n  eth*: {dhcp: true}\n  mac=52:54:00:00:00:01: {mtu: 1400}\n",
		"interfaces:\n  bond0: {bond_opts: {mode: \"4\", miimon: \"100\"}, vlans: \"100,200:mgmt\"}\n  eth0: {bond: bond0}\n",
		"interfaces:\n  br0: {bridge: \"true\"}\n  eth1: {bridge: br0}\n",
		"dns: {nameservers: [192.0.2.53], search: [example.com]}\ndhcp_timeout: 5\n",
		"interfaces:\n  eth0: {routes: [{destination: 203.0.113.0/24, gateway: 192.0.2.254, metric: 5}]}\n",
	} {
		f.Add([]byte(s))
	}
	links := []LinkInfo{{Name: "eth0", MAC: "52:54:00:00:00:01"}, {Name: "eth1", MAC: "52:54:00:00:00:02"}, {Name: "mgmt"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var cfg Config
		if yaml.Unmarshal(b, &cfg) != nil {
			return
		}
		if ps := cfg.Validate(); len(ps) > 0 {
			return
		}
		if _, err := MakePlan(cfg, links); err != nil {
			t.Errorf("MakePlan of a valid config: %v\nconfig: %q", err, b)
		}
	})
}
