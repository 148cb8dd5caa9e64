package netconf

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestREADMENetworkExample keeps the README's "Every rancher.network key"
// example true: it parses, validates and plans.
func TestREADMENetworkExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Skipf("README.md not found: %v", err)
	}
	s := string(b)
	i := strings.Index(s, "### Every `rancher.network` key")
	if i < 0 {
		t.Fatal("README has no \"Every rancher.network key\" section")
	}
	s = s[i:]
	start := strings.Index(s, "    rancher:\n")
	end := strings.Index(s[start:], "\n\n")
	var lines []string
	for _, l := range strings.Split(s[start:start+end], "\n") {
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	var doc struct {
		Rancher struct {
			Network Config `yaml:"network"`
		} `yaml:"rancher"`
	}
	dec := yaml.NewDecoder(strings.NewReader(strings.Join(lines, "\n")))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("README example does not parse: %v", err)
	}
	cfg := doc.Rancher.Network
	if ps := cfg.Validate(); len(ps) > 0 {
		t.Fatalf("README example is invalid: %v", ps)
	}
	var links []LinkInfo
	for _, n := range []string{"eth0", "eth1", "eth2", "eth3", "eth4", "eth5"} {
		links = append(links, LinkInfo{Name: n, MAC: "52:54:00:00:00:0" + n[3:]})
	}
	links = append(links, LinkInfo{Name: "ens9", MAC: "52:54:00:12:34:56"})
	p, err := MakePlan(cfg, links)
	if err != nil {
		t.Fatalf("MakePlan(README example): %v", err)
	}
	got := map[string]LinkPlan{}
	var order []string
	for _, lp := range p.Links {
		got[lp.Name] = lp
		order = append(order, lp.Name)
	}
	for name, want := range map[string]string{"eth0": "eth*", "eth1": "eth1", "eth2": "lan", "ens9": "mac=52:54:00:12:34:56", "mgmt": "mgmt", "bond0": "bond0"} {
		if got[name].Key != want {
			t.Errorf("%s matched %q, want %q (plan order %v)", name, got[name].Key, want, order)
		}
	}
	if got["eth4"].Master != "bond0" || got["eth3"].Master != "br0" || got["mgmt"].Create == nil || got["mgmt"].Create.Parent != "bond0" {
		t.Errorf("plan = %+v", p.Links)
	}
}
