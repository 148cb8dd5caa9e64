package fake

import (
	"net/http"
	"strings"
)

// GCE is a fake GCE metadata server: /computeMetadata/v1/..., refusing
// requests without `Metadata-Flavor: Google`.
type GCE struct {
	faulter
	// Meta maps paths under /computeMetadata/v1/ to values.
	Meta map[string]string
}

// GCEMeta is the metadata of the default fake GCE instance.
func GCEMeta() map[string]string {
	return map[string]string{
		"instance/id":                       "4520031799277581759",
		"instance/hostname":                 "berth-1.c.berth-test.internal",
		"instance/name":                     "berth-1",
		"instance/zone":                     "projects/123456789/zones/us-central1-a",
		"instance/network-interfaces/0/ip":  "192.0.2.20",
		"instance/network-interfaces/0/mac": "42:01:c0:00:02:14",
		"instance/network-interfaces/0/access-configs/0/external-ip": "203.0.113.20",
		"instance/attributes/ssh-keys":                               "alice:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGceInstanceKey alice\n",
		"project/attributes/ssh-keys":                                "bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGceProjectKey bob\n",
		"project/project-id":                                         "berth-test",
	}
}

// ServeHTTP answers like the GCE metadata server.
func (g *GCE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.before(w, r) {
		return
	}
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing Metadata-Flavor:Google header", http.StatusForbidden)
		return
	}
	p, ok := strings.CutPrefix(r.URL.Path, "/computeMetadata/v1/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	v, ok := tree(g.Meta).lookup(p)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Metadata-Flavor", "Google")
	g.write(w, r, []byte(v))
}

// OpenStack is a fake Nova metadata service: /openstack/latest/....
type OpenStack struct {
	faulter
	// Files maps paths under /openstack/latest/ (meta_data.json, user_data,
	// network_data.json) to contents; a missing one answers 404.
	Files map[string][]byte
}

// ServeHTTP answers like the Nova metadata service.
func (o *OpenStack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !o.before(w, r) {
		return
	}
	p, ok := strings.CutPrefix(r.URL.Path, "/openstack/latest/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, ok := o.Files[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	o.write(w, r, b)
}

// OpenStackMetaData is the meta_data.json of the default fake instance.
const OpenStackMetaData = `{
  "uuid": "83679162-1378-4288-a2d4-70e13ec132aa",
  "name": "berth-1",
  "hostname": "berth-1.novalocal",
  "availability_zone": "nova",
  "project_id": "f7ac731cc11f40efbc03a9f9e1d1d21f",
  "launch_index": 0,
  "public_keys": {"berth-test": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpenStackKey berth-test"},
  "keys": [{"name": "berth-test", "type": "ssh", "data": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpenStackKey berth-test"}]
}
`

// OpenStackNetworkData is the network_data.json of the default fake
// instance: one NIC with a static address and a VLAN with DHCP.
const OpenStackNetworkData = `{
  "links": [
    {"id": "tap0", "type": "phy", "ethernet_mac_address": "fa:16:3e:00:00:01", "mtu": 1450},
    {"id": "vlan0", "type": "vlan", "vlan_link": "tap0", "vlan_id": 100, "vlan_mac_address": "fa:16:3e:00:00:01"}
  ],
  "networks": [
    {"id": "net0", "type": "ipv4", "link": "tap0", "ip_address": "192.0.2.30", "netmask": "255.255.255.0",
     "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}],
     "dns_nameservers": ["192.0.2.53"]},
    {"id": "net1", "type": "ipv4_dhcp", "link": "vlan0"}
  ],
  "services": [{"type": "dns", "address": "198.51.100.53"}]
}
`

// OpenStackFiles are the default fake instance's files.
func OpenStackFiles(userData []byte) map[string][]byte {
	m := map[string][]byte{
		"meta_data.json":    []byte(OpenStackMetaData),
		"network_data.json": []byte(OpenStackNetworkData),
	}
	if userData != nil {
		m["user_data"] = userData
	}
	return m
}
