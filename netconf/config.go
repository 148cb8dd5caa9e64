// Package netconf owns the machine's network: the desired network state
// (rancher.network) and applying it to the kernel with netlink and a Go DHCP
// client, idempotently.
//
// A boot uses it in three steps:
//
//	early, err := netconf.Early(ctx, needsNetworkDatasource)  // before datasources
//	// ... datasources, cloudinit ...
//	st, err := netconf.Apply(ctx, cfg.Rancher.Network,
//		netconf.WithHostname(hostnameFromConfigOrMetadata), netconf.WithPrevious(early))
//	go st.Run(ctx)                                           // renew leases for the machine's lifetime
//
// Config.Validate lists problems with key paths relative to rancher.network;
// Apply refuses an invalid Config before touching anything.
package netconf

import "strings"

// Config is the desired network state, the `rancher.network` key of a
// cloud-config. Datasources that know the network (OpenStack
// network_data.json, EC2 per-MAC interfaces) convert what they learn into
// this same type.
type Config struct {
	// Interfaces is keyed by an exact link name ("eth0"), a glob ("eth*")
	// or a MAC address ("mac=52:54:00:12:34:56"). An exact name beats a glob.
	Interfaces map[string]InterfaceConfig `yaml:"interfaces,omitempty" json:"interfaces,omitempty"`
	DNS        DNSConfig                  `yaml:"dns,omitempty" json:"dns,omitempty"`
	// PreCmds run before any link is touched, PostCmds after all are configured.
	PreCmds    []string `yaml:"pre_cmds,omitempty" json:"pre_cmds,omitempty"`
	PostCmds   []string `yaml:"post_cmds,omitempty" json:"post_cmds,omitempty"`
	HTTPProxy  string   `yaml:"http_proxy,omitempty" json:"http_proxy,omitempty"`
	HTTPSProxy string   `yaml:"https_proxy,omitempty" json:"https_proxy,omitempty"`
	NoProxy    string   `yaml:"no_proxy,omitempty" json:"no_proxy,omitempty"`
	// DHCPTimeout is how long, in seconds, to wait for a first lease.
	DHCPTimeout int `yaml:"dhcp_timeout,omitempty" json:"dhcp_timeout,omitempty"`
}

// InterfaceConfig is the desired state of one link (or of every link a
// glob or MAC key matches).
type InterfaceConfig struct {
	// Match overrides the map key as the matcher (name, glob or mac=...).
	Match string `yaml:"match,omitempty" json:"match,omitempty"`
	// DHCP is nil when unset: a link with static addresses and no dhcp key
	// gets no DHCP; `dhcp: false` always means no DHCP.
	DHCP     *bool  `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	DHCPArgs string `yaml:"dhcp_args,omitempty" json:"dhcp_args,omitempty"`
	// Address and Addresses are CIDR strings ("192.0.2.10/24", "2001:db8::5/64").
	Address     string   `yaml:"address,omitempty" json:"address,omitempty"`
	Addresses   []string `yaml:"addresses,omitempty" json:"addresses,omitempty"`
	IPv4LL      bool     `yaml:"ipv4ll,omitempty" json:"ipv4ll,omitempty"`
	Gateway     string   `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	GatewayIPv6 string   `yaml:"gateway_ipv6,omitempty" json:"gateway_ipv6,omitempty"`
	MTU         int      `yaml:"mtu,omitempty" json:"mtu,omitempty"`
	// Bridge is "true" when this link is itself a bridge, or the name of
	// the bridge this link joins.
	Bridge string `yaml:"bridge,omitempty" json:"bridge,omitempty"`
	// Bond names the bond this link is a slave of.
	Bond string `yaml:"bond,omitempty" json:"bond,omitempty"`
	// BondOpts are the bond's options when this link is a bond (mode, miimon, ...).
	BondOpts map[string]string `yaml:"bond_opts,omitempty" json:"bond_opts,omitempty"`
	// Vlans is "100,200:name": VLAN IDs on this link, each with an optional name.
	Vlans  string   `yaml:"vlans,omitempty" json:"vlans,omitempty"`
	PreUp  []string `yaml:"pre_up,omitempty" json:"pre_up,omitempty"`
	PostUp []string `yaml:"post_up,omitempty" json:"post_up,omitempty"`
	// Routes are extra routes on this link.
	Routes []Route `yaml:"routes,omitempty" json:"routes,omitempty"`
}

// Route is one static route. Destination is a CIDR ("0.0.0.0/0" for default).
type Route struct {
	Destination string `yaml:"destination" json:"destination"`
	Gateway     string `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	Metric      int    `yaml:"metric,omitempty" json:"metric,omitempty"`
}

// DNSConfig is the resolver configuration. Configured nameservers come
// first in /etc/resolv.conf and are never replaced by DHCP-learned ones.
type DNSConfig struct {
	Nameservers []string `yaml:"nameservers,omitempty" json:"nameservers,omitempty"`
	Search      []string `yaml:"search,omitempty" json:"search,omitempty"`
}

// ProxyEnv is the proxy keys as environment variables, for the engines
// and what they run: HTTP_PROXY, HTTPS_PROXY and NO_PROXY for each key
// that is set, each also in lower case (dockerd and Go read either; curl
// and wget read the lower-case names). Berth's own URL fetches use
// Proxy; DHCP and the rest of netconf use none.
func (c Config) ProxyEnv() []string {
	var env []string
	for _, kv := range [][2]string{{"HTTP_PROXY", c.HTTPProxy}, {"HTTPS_PROXY", c.HTTPSProxy}, {"NO_PROXY", c.NoProxy}} {
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1], strings.ToLower(kv[0])+"="+kv[1])
		}
	}
	return env
}
