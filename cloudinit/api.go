package cloudinit

import (
	"github.com/berthos/berth/netconf"
)

// Metadata is what a datasource learned about the instance besides its
// user-data. It is saved as YAML to /var/lib/rancher/conf/metadata and
// merged below user-data (precedence 3 of ARCHITECTURE.md).
type Metadata struct {
	InstanceID    string            `yaml:"instance_id,omitempty" json:"instance_id,omitempty"`
	Hostname      string            `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	LocalHostname string            `yaml:"local_hostname,omitempty" json:"local_hostname,omitempty"`
	SSHPublicKeys []string          `yaml:"ssh_public_keys,omitempty" json:"ssh_public_keys,omitempty"`
	PublicIPv4    string            `yaml:"public_ipv4,omitempty" json:"public_ipv4,omitempty"`
	PrivateIPv4   string            `yaml:"private_ipv4,omitempty" json:"private_ipv4,omitempty"`
	PublicIPv6    string            `yaml:"public_ipv6,omitempty" json:"public_ipv6,omitempty"`
	PrivateIPv6   string            `yaml:"private_ipv6,omitempty" json:"private_ipv6,omitempty"`
	Region        string            `yaml:"region,omitempty" json:"region,omitempty"`
	Zone          string            `yaml:"zone,omitempty" json:"zone,omitempty"`
	Extra         map[string]string `yaml:"extra,omitempty" json:"extra,omitempty"`
	// Network is nil when the source says nothing about the network.
	Network *netconf.Config `yaml:"network,omitempty" json:"network,omitempty"`
}

// UserData is user-data split by kind: the cloud-config parts (merged into
// one YAML document, nil when there is none) and the scripts to run.
type UserData struct {
	CloudConfig []byte
	Scripts     []Script
}

// Script is one `#!` script from user-data, kept to be run.
type Script struct {
	Name string
	Body []byte
}

// Report is what parsing and validation found, each entry with its source
// and position.
type Report struct {
	Entries []Entry
}

// Entry is one problem found in a config source.
type Entry struct {
	Error   bool   // false: a warning
	Source  string // "user-data", "/var/lib/rancher/conf/cloud-config.yml", "cmdline"
	Line    int
	Column  int
	Path    string // key path, "rancher.network.interfaces.eth0.mtu"
	Message string
}
