// Package openstack reads OpenStack metadata: the Nova metadata service over
// HTTP (/openstack/latest/...) and the pure parsers for meta_data.json and
// network_data.json that the config drive shares.
package openstack

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/netconf"
)

// MetaData is the part of meta_data.json Berth uses.
type MetaData struct {
	UUID             string            `json:"uuid"`
	Name             string            `json:"name"`
	Hostname         string            `json:"hostname"`
	AvailabilityZone string            `json:"availability_zone"`
	ProjectID        string            `json:"project_id"`
	PublicKeys       map[string]string `json:"public_keys"`
	Keys             []struct {
		Name string `json:"name"`
		Type string `json:"type"`
		Data string `json:"data"`
	} `json:"keys"`
	Files []struct {
		ContentPath string `json:"content_path"`
		Path        string `json:"path"`
	} `json:"files"`
}

// ParseMetaData converts meta_data.json into Metadata. Public keys come
// first from public_keys in name order, then from keys, without duplicates.
func ParseMetaData(b []byte) (*MetaData, cloudinit.Metadata, error) {
	var md MetaData
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, cloudinit.Metadata{}, fmt.Errorf("parse meta_data.json: %w", err)
	}
	m := cloudinit.Metadata{
		InstanceID: md.UUID,
		Hostname:   md.Hostname,
		Zone:       md.AvailabilityZone,
	}
	if m.Hostname == "" {
		m.Hostname = md.Name
	}
	m.LocalHostname = m.Hostname
	names := make([]string, 0, len(md.PublicKeys))
	for n := range md.PublicKeys {
		names = append(names, n)
	}
	sort.Strings(names)
	add := func(k string) {
		k = strings.TrimSpace(k)
		if k != "" && !slices.Contains(m.SSHPublicKeys, k) {
			m.SSHPublicKeys = append(m.SSHPublicKeys, k)
		}
	}
	for _, n := range names {
		add(md.PublicKeys[n])
	}
	for _, k := range md.Keys {
		if k.Type == "" || k.Type == "ssh" {
			add(k.Data)
		}
	}
	if md.Name != "" || md.ProjectID != "" {
		m.Extra = map[string]string{}
		if md.Name != "" {
			m.Extra["name"] = md.Name
		}
		if md.ProjectID != "" {
			m.Extra["project_id"] = md.ProjectID
		}
	}
	return &md, m, nil
}

// NetworkData is OpenStack's network_data.json.
type NetworkData struct {
	Links    []Link    `json:"links"`
	Networks []Network `json:"networks"`
	Services []Service `json:"services"`
}

// Link is one L2 link: a NIC (phy, ovs, vif, tap, bridge...), a bond or a VLAN.
type Link struct {
	ID                 string   `json:"id"`
	Type               string   `json:"type"`
	MAC                string   `json:"ethernet_mac_address"`
	MTU                *int     `json:"mtu"`
	VLANLink           string   `json:"vlan_link"`
	VLANID             int      `json:"vlan_id"`
	BondLinks          []string `json:"bond_links"`
	BondMode           string   `json:"bond_mode"`
	BondMiimon         int      `json:"bond_miimon"`
	BondXmitHashPolicy string   `json:"bond_xmit_hash_policy"`
}

// Network is one L3 network on a link.
type Network struct {
	ID         string   `json:"id"`
	Type       string   `json:"type"`
	Link       string   `json:"link"`
	IPAddress  string   `json:"ip_address"`
	Netmask    string   `json:"netmask"`
	Routes     []Route  `json:"routes"`
	DNSServers []string `json:"dns_nameservers"`
}

// Route is a route of a static network.
type Route struct {
	Network string `json:"network"`
	Netmask string `json:"netmask"`
	Gateway string `json:"gateway"`
}

// Service is a network service; Berth uses type "dns".
type Service struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// ParseNetworkData converts network_data.json into a netconf.Config.
// Physical links are keyed "mac=<address>"; bonds are named bond0, bond1...
// in link order and VLANs vlan<ID>, which the parent link's `vlans` names.
func ParseNetworkData(b []byte) (*netconf.Config, error) {
	var nd NetworkData
	if err := json.Unmarshal(b, &nd); err != nil {
		return nil, fmt.Errorf("parse network_data.json: %w", err)
	}
	return nd.Config()
}

// Config converts parsed network data into a netconf.Config.
func (nd *NetworkData) Config() (*netconf.Config, error) {
	cfg := &netconf.Config{Interfaces: map[string]netconf.InterfaceConfig{}}
	keys := map[string]string{} // link id -> interface key
	bonds := 0
	// Plain links first, so bonds and VLANs can point at them.
	for _, l := range nd.Links {
		switch l.Type {
		case "bond", "vlan":
			continue
		}
		if l.MAC == "" {
			return nil, fmt.Errorf("network_data.json: link %q has no ethernet_mac_address", l.ID)
		}
		key := "mac=" + strings.ToLower(l.MAC)
		keys[l.ID] = key
		ic := netconf.InterfaceConfig{}
		if l.MTU != nil {
			ic.MTU = *l.MTU
		}
		cfg.Interfaces[key] = ic
	}
	for _, l := range nd.Links {
		if l.Type != "bond" {
			continue
		}
		name := "bond" + strconv.Itoa(bonds)
		bonds++
		keys[l.ID] = name
		ic := netconf.InterfaceConfig{BondOpts: map[string]string{}}
		if l.BondMode != "" {
			ic.BondOpts["mode"] = l.BondMode
		}
		if l.BondMiimon != 0 {
			ic.BondOpts["miimon"] = strconv.Itoa(l.BondMiimon)
		}
		if l.BondXmitHashPolicy != "" {
			ic.BondOpts["xmit_hash_policy"] = l.BondXmitHashPolicy
		}
		if l.MTU != nil {
			ic.MTU = *l.MTU
		}
		cfg.Interfaces[name] = ic
		for _, s := range l.BondLinks {
			k, ok := keys[s]
			if !ok {
				return nil, fmt.Errorf("network_data.json: bond %q: unknown link %q", l.ID, s)
			}
			sl := cfg.Interfaces[k]
			sl.Bond = name
			cfg.Interfaces[k] = sl
		}
	}
	for _, l := range nd.Links {
		if l.Type != "vlan" {
			continue
		}
		parent, ok := keys[l.VLANLink]
		if !ok {
			return nil, fmt.Errorf("network_data.json: vlan %q: unknown link %q", l.ID, l.VLANLink)
		}
		if l.VLANID < 1 || l.VLANID > 4094 {
			return nil, fmt.Errorf("network_data.json: vlan %q: vlan_id %d out of range", l.ID, l.VLANID)
		}
		name := "vlan" + strconv.Itoa(l.VLANID)
		keys[l.ID] = name
		p := cfg.Interfaces[parent]
		entry := strconv.Itoa(l.VLANID) + ":" + name
		if p.Vlans == "" {
			p.Vlans = entry
		} else {
			p.Vlans += "," + entry
		}
		cfg.Interfaces[parent] = p
		ic := netconf.InterfaceConfig{}
		if l.MTU != nil {
			ic.MTU = *l.MTU
		}
		cfg.Interfaces[name] = ic
	}
	yes, no := true, false
	addDNS := func(a string) {
		if a != "" && !slices.Contains(cfg.DNS.Nameservers, a) {
			cfg.DNS.Nameservers = append(cfg.DNS.Nameservers, a)
		}
	}
	for _, n := range nd.Networks {
		key, ok := keys[n.Link]
		if !ok {
			return nil, fmt.Errorf("network_data.json: network %q: unknown link %q", n.ID, n.Link)
		}
		ic := cfg.Interfaces[key]
		switch n.Type {
		case "ipv4_dhcp", "dhcp4":
			ic.DHCP = &yes
		case "ipv4", "ipv6":
			cidr, err := toCIDR(n.IPAddress, n.Netmask)
			if err != nil {
				return nil, fmt.Errorf("network_data.json: network %q: %w", n.ID, err)
			}
			ic.Addresses = append(ic.Addresses, cidr)
			if ic.DHCP == nil {
				ic.DHCP = &no
			}
			for _, r := range n.Routes {
				dst, err := toCIDR(r.Network, r.Netmask)
				if err != nil {
					return nil, fmt.Errorf("network_data.json: network %q route: %w", n.ID, err)
				}
				switch dst {
				case "0.0.0.0/0":
					ic.Gateway = r.Gateway
				case "::/0":
					ic.GatewayIPv6 = r.Gateway
				default:
					ic.Routes = append(ic.Routes, netconf.Route{Destination: dst, Gateway: r.Gateway})
				}
			}
		case "ipv6_dhcp", "ipv6_dhcpv6-stateful", "ipv6_dhcpv6-stateless", "ipv6_slaac":
			// The kernel's router advertisement handling covers these.
		default:
			return nil, fmt.Errorf("network_data.json: network %q: unknown type %q", n.ID, n.Type)
		}
		for _, d := range n.DNSServers {
			addDNS(d)
		}
		cfg.Interfaces[key] = ic
	}
	for _, s := range nd.Services {
		if s.Type == "dns" {
			addDNS(s.Address)
		}
	}
	return cfg, nil
}

// toCIDR joins an address and a netmask given as dotted quad, IPv6 mask
// or prefix length ("24", "64") into a CIDR string.
func toCIDR(addr, mask string) (string, error) {
	ip := net.ParseIP(addr)
	if ip == nil {
		return "", fmt.Errorf("bad address %q", addr)
	}
	if n, err := strconv.Atoi(mask); err == nil {
		bits := 128
		if ip.To4() != nil {
			bits = 32
		}
		if n < 0 || n > bits {
			return "", fmt.Errorf("bad prefix length %q for %s", mask, addr)
		}
		return (&net.IPNet{IP: ip, Mask: net.CIDRMask(n, bits)}).String(), nil
	}
	m := net.ParseIP(mask)
	if m == nil {
		return "", fmt.Errorf("bad netmask %q", mask)
	}
	var im net.IPMask
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
		m4 := m.To4()
		if m4 == nil {
			return "", fmt.Errorf("netmask %q does not fit %s", mask, addr)
		}
		im = net.IPMask(m4)
	} else {
		im = net.IPMask(m.To16())
	}
	ones, bits := im.Size()
	if bits == 0 {
		return "", fmt.Errorf("netmask %q is not contiguous", mask)
	}
	return fmt.Sprintf("%s/%d", ip.String(), ones), nil
}
