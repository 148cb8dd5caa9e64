// Package cloudinit owns the configuration model of a Berth machine: the
// typed cloud-config, parsing with line:column reports, merging of the
// sources in their documented precedence, the kernel command line, the
// user-data formats, and rendering to what the other packages consume.
package cloudinit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berthos/berth/netconf"
)

// Config is one typed cloud-config: a single source's, or the merged
// snapshot of one boot. YAML names are RancherOS 1.x's.
type Config struct {
	Hostname          string      `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	SSHAuthorizedKeys []string    `yaml:"ssh_authorized_keys,omitempty" json:"ssh_authorized_keys,omitempty"`
	WriteFiles        []WriteFile `yaml:"write_files,omitempty" json:"write_files,omitempty"`
	// Runcmd runs once the system services are up; Bootcmd early in boot.
	Runcmd  []Command `yaml:"runcmd,omitempty" json:"runcmd,omitempty"`
	Bootcmd []Command `yaml:"bootcmd,omitempty" json:"bootcmd,omitempty"`
	Mounts  []Mount   `yaml:"mounts,omitempty" json:"mounts,omitempty"`
	Rancher Rancher   `yaml:"rancher,omitempty" json:"rancher,omitempty"`
}

// WriteFile is one entry of write_files.
type WriteFile struct {
	Path    string `yaml:"path" json:"path"`
	Content string `yaml:"content,omitempty" json:"content,omitempty"`
	// Encoding is "", b64, base64, gz, gzip, gz+b64, gz+base64, gzip+b64 or gzip+base64.
	Encoding string `yaml:"encoding,omitempty" json:"encoding,omitempty"`
	// Owner is "user", "user:group" or numeric ids.
	Owner string `yaml:"owner,omitempty" json:"owner,omitempty"`
	// Permissions is an octal string such as "0644".
	Permissions string `yaml:"permissions,omitempty" json:"permissions,omitempty"`
	// Container names the system service whose filesystem receives the file.
	Container string `yaml:"container,omitempty" json:"container,omitempty"`
}

// Command is one runcmd/bootcmd entry: either a shell line (run with
// `sh -c`) or an argv list (run directly). An empty list is a no-op.
type Command struct {
	Shell string   `yaml:"-" json:"shell,omitempty"`
	Argv  []string `yaml:"-" json:"argv,omitempty"`
}

// Mount is one entry of mounts: [device, mountpoint, fstype, options].
// A swap entry has fstype "swap" and an empty mountpoint.
type Mount struct {
	Device     string `json:"device"`
	MountPoint string `json:"mountpoint"`
	FSType     string `json:"fstype,omitempty"`
	Options    string `json:"options,omitempty"`
}

// Rancher is the `rancher:` key.
type Rancher struct {
	Environment map[string]string `yaml:"environment,omitempty" json:"environment,omitempty"`
	Debug       bool              `yaml:"debug,omitempty" json:"debug,omitempty"`
	Log         bool              `yaml:"log,omitempty" json:"log,omitempty"`
	Console     string            `yaml:"console,omitempty" json:"console,omitempty"`
	// Autologin names the consoles (e.g. "ttyS0", comma-separated) that get
	// a root shell without a password; PID 1 reads it from the command line.
	Autologin       string            `yaml:"autologin,omitempty" json:"autologin,omitempty"`
	Modules         []string          `yaml:"modules,omitempty" json:"modules,omitempty"`
	Sysctl          map[string]string `yaml:"sysctl,omitempty" json:"sysctl,omitempty"`
	ResizeDevice    string            `yaml:"resize_device,omitempty" json:"resize_device,omitempty"`
	RestartServices []string          `yaml:"restart_services,omitempty" json:"restart_services,omitempty"`
	// ShutdownTimeout is in seconds.
	ShutdownTimeout int                 `yaml:"shutdown_timeout,omitempty" json:"shutdown_timeout,omitempty"`
	Disable         []string            `yaml:"disable,omitempty" json:"disable,omitempty"`
	Password        string              `yaml:"password,omitempty" json:"password,omitempty"`
	Services        map[string]*Service `yaml:"services,omitempty" json:"services,omitempty"`
	// ServicesInclude enables optional services by name (or URL): name -> enabled.
	ServicesInclude map[string]bool     `yaml:"services_include,omitempty" json:"services_include,omitempty"`
	Bootstrap       map[string]*Service `yaml:"bootstrap,omitempty" json:"bootstrap,omitempty"`
	CloudInit       CloudInit           `yaml:"cloud_init,omitempty" json:"cloud_init,omitempty"`
	Upgrade         Upgrade             `yaml:"upgrade,omitempty" json:"upgrade,omitempty"`
	Defaults        Defaults            `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	// RegistryAuths is keyed by registry address.
	RegistryAuths   map[string]RegistryAuth `yaml:"registry_auths,omitempty" json:"registry_auths,omitempty"`
	Repositories    map[string]Repository   `yaml:"repositories,omitempty" json:"repositories,omitempty"`
	SSH             SSH                     `yaml:"ssh,omitempty" json:"ssh,omitempty"`
	State           State                   `yaml:"state,omitempty" json:"state,omitempty"`
	Docker          Engine                  `yaml:"docker,omitempty" json:"docker,omitempty"`
	SystemDocker    Engine                  `yaml:"system_docker,omitempty" json:"system_docker,omitempty"`
	BootstrapDocker Engine                  `yaml:"bootstrap_docker,omitempty" json:"bootstrap_docker,omitempty"`
	Network         netconf.Config          `yaml:"network,omitempty" json:"network,omitempty"`
	Install         Install                 `yaml:"install,omitempty" json:"install,omitempty"`
	Zram            Zram                    `yaml:"zram,omitempty" json:"zram,omitempty"`
}

// Zram is `rancher.zram`: swap in compressed RAM (the kernel's zram), so
// that a small machine pages its daemons' cold memory out, compressed,
// instead of evicting the engine binaries' pages and reading them again.
type Zram struct {
	// Size is "auto" or empty (half the RAM on a machine with less than
	// ZramAutoBelow of it, none on a bigger one), "0" (none), a size in
	// bytes or with a K, M or G suffix ("128M"), or a share of the RAM
	// ("50%").
	Size string `yaml:"size,omitempty" json:"size,omitempty"`
}

// ZramAutoBelow is the RAM under which rancher.zram.size "auto" makes a
// zram swap: 768 MiB (a 1 GiB machine reports about 970 MiB, and needs
// none).
const ZramAutoBelow = 768 << 20

// Bytes is the zram device's size on a machine with memTotal bytes of
// RAM; 0 means none.
func (z Zram) Bytes(memTotal int64) (int64, error) {
	s := strings.TrimSpace(z.Size)
	switch {
	case s == "" || s == "auto":
		if memTotal < ZramAutoBelow {
			return memTotal / 2, nil
		}
		return 0, nil
	case strings.HasSuffix(s, "%"):
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || n < 0 || n > 400 {
			return 0, fmt.Errorf("zram size %q: want a percentage of the RAM from 0%% to 400%%", z.Size)
		}
		return int64(float64(memTotal) * n / 100), nil
	}
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k', 'K':
		mult = 1 << 10
	case 'm', 'M':
		mult = 1 << 20
	case 'g', 'G':
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("zram size %q: want auto, 0, a size (128M, 1G) or a percentage of the RAM (50%%)", z.Size)
	}
	return n * mult, nil
}

// CloudInit is `rancher.cloud_init`: where user-data comes from.
type CloudInit struct {
	// Datasources are `type[:argument]` in priority order: ec2, gce,
	// openstack, configdrive[:/dev/sr0], cmdline, url:URL, file:PATH, or *.
	Datasources []string `yaml:"datasources,omitempty" json:"datasources,omitempty"`
	// Timeout is the whole datasource run's budget in seconds (default 60).
	Timeout int `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	EC2     EC2 `yaml:"ec2,omitempty" json:"ec2,omitempty"`
}

// EC2 tunes the ec2 datasource.
type EC2 struct {
	// IMDSv1 allows the token-less fallback; nil means allowed.
	IMDSv1 *bool `yaml:"imdsv1,omitempty" json:"imdsv1,omitempty"`
}

// Upgrade is `rancher.upgrade`.
type Upgrade struct {
	URL      string `yaml:"url,omitempty" json:"url,omitempty"`
	Image    string `yaml:"image,omitempty" json:"image,omitempty"`
	Rollback string `yaml:"rollback,omitempty" json:"rollback,omitempty"`
	Policy   string `yaml:"policy,omitempty" json:"policy,omitempty"`
}

// Defaults is `rancher.defaults`: values the platform chose at build time.
type Defaults struct {
	Hostname         string         `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	Docker           Engine         `yaml:"docker,omitempty" json:"docker,omitempty"`
	Network          netconf.Config `yaml:"network,omitempty" json:"network,omitempty"`
	SystemDockerLogs string         `yaml:"system_docker_logs,omitempty" json:"system_docker_logs,omitempty"`
}

// RegistryAuth is one entry of `rancher.registry_auths`.
type RegistryAuth struct {
	Auth     string `yaml:"auth,omitempty" json:"auth,omitempty"`
	Username string `yaml:"username,omitempty" json:"username,omitempty"`
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	Email    string `yaml:"email,omitempty" json:"email,omitempty"`
}

// Repository is one entry of `rancher.repositories` (a services index).
type Repository struct {
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
}

// SSH is `rancher.ssh`.
type SSH struct {
	// Keys are host keys by type ("ssh_host_ed25519_key" -> PEM).
	Keys          map[string]string `yaml:"keys,omitempty" json:"keys,omitempty"`
	Daemon        *bool             `yaml:"daemon,omitempty" json:"daemon,omitempty"`
	Port          int               `yaml:"port,omitempty" json:"port,omitempty"`
	ListenAddress string            `yaml:"listen_address,omitempty" json:"listen_address,omitempty"`
}

// State is `rancher.state`: the persistent state disk.
type State struct {
	Dev        string   `yaml:"dev,omitempty" json:"dev,omitempty"`
	FSType     string   `yaml:"fstype,omitempty" json:"fstype,omitempty"`
	Directory  string   `yaml:"directory,omitempty" json:"directory,omitempty"`
	Wait       bool     `yaml:"wait,omitempty" json:"wait,omitempty"`
	Required   bool     `yaml:"required,omitempty" json:"required,omitempty"`
	Autoformat []string `yaml:"autoformat,omitempty" json:"autoformat,omitempty"`
	OemDev     string   `yaml:"oem_dev,omitempty" json:"oem_dev,omitempty"`
	OemFSType  string   `yaml:"oem_fstype,omitempty" json:"oem_fstype,omitempty"`
	BootDev    string   `yaml:"boot_dev,omitempty" json:"boot_dev,omitempty"`
	BootFSType string   `yaml:"boot_fstype,omitempty" json:"boot_fstype,omitempty"`
	Script     string   `yaml:"script,omitempty" json:"script,omitempty"`
}

// Engine is `rancher.docker`, `rancher.system_docker` or
// `rancher.bootstrap_docker`: one dockerd's settings.
type Engine struct {
	Engine     string   `yaml:"engine,omitempty" json:"engine,omitempty"`
	TLS        bool     `yaml:"tls,omitempty" json:"tls,omitempty"`
	TLSArgs    []string `yaml:"tls_args,omitempty" json:"tls_args,omitempty"`
	Args       []string `yaml:"args,omitempty" json:"args,omitempty"`
	ExtraArgs  []string `yaml:"extra_args,omitempty" json:"extra_args,omitempty"`
	ServerCert string   `yaml:"server_cert,omitempty" json:"server_cert,omitempty"`
	ServerKey  string   `yaml:"server_key,omitempty" json:"server_key,omitempty"`
	CACert     string   `yaml:"ca_cert,omitempty" json:"ca_cert,omitempty"`
	CAKey      string   `yaml:"ca_key,omitempty" json:"ca_key,omitempty"`
	// Environment is a list of KEY=VALUE for the engine's process.
	Environment []string `yaml:"environment,omitempty" json:"environment,omitempty"`
	Bridge      string   `yaml:"bridge,omitempty" json:"bridge,omitempty"`
	BIP         string   `yaml:"bip,omitempty" json:"bip,omitempty"`
	ConfigFile  string   `yaml:"config_file,omitempty" json:"config_file,omitempty"`
	Containerd  string   `yaml:"containerd,omitempty" json:"containerd,omitempty"`
	Debug       *bool    `yaml:"debug,omitempty" json:"debug,omitempty"`
	ExecRoot    string   `yaml:"exec_root,omitempty" json:"exec_root,omitempty"`
	Group       string   `yaml:"group,omitempty" json:"group,omitempty"`
	// Graph is the old name of DataRoot; when both are set DataRoot wins.
	Graph            string            `yaml:"graph,omitempty" json:"graph,omitempty"`
	DataRoot         string            `yaml:"data_root,omitempty" json:"data_root,omitempty"`
	Host             []string          `yaml:"host,omitempty" json:"host,omitempty"`
	InsecureRegistry []string          `yaml:"insecure_registry,omitempty" json:"insecure_registry,omitempty"`
	LiveRestore      *bool             `yaml:"live_restore,omitempty" json:"live_restore,omitempty"`
	LogDriver        string            `yaml:"log_driver,omitempty" json:"log_driver,omitempty"`
	LogOpts          map[string]string `yaml:"log_opts,omitempty" json:"log_opts,omitempty"`
	PidFile          string            `yaml:"pid_file,omitempty" json:"pid_file,omitempty"`
	RegistryMirror   string            `yaml:"registry_mirror,omitempty" json:"registry_mirror,omitempty"`
	Restart          *bool             `yaml:"restart,omitempty" json:"restart,omitempty"`
	SelinuxEnabled   *bool             `yaml:"selinux_enabled,omitempty" json:"selinux_enabled,omitempty"`
	StorageDriver    string            `yaml:"storage_driver,omitempty" json:"storage_driver,omitempty"`
	UserlandProxy    *bool             `yaml:"userland_proxy,omitempty" json:"userland_proxy,omitempty"`
	Iptables         *bool             `yaml:"iptables,omitempty" json:"iptables,omitempty"`
	IPForward        *bool             `yaml:"ip_forward,omitempty" json:"ip_forward,omitempty"`
}

// Install is `rancher.install`: the unattended installer's settings. PID 1
// reads them from the kernel command line (platforms/install.ParseUnattended);
// they are here so the boot knows the keys.
type Install struct {
	Device         string `yaml:"device,omitempty" json:"device,omitempty"`
	CloudConfigURL string `yaml:"cloud_config_url,omitempty" json:"cloud_config_url,omitempty"`
	Type           string `yaml:"type,omitempty" json:"type,omitempty"`
	Append         string `yaml:"append,omitempty" json:"append,omitempty"`
	Force          bool   `yaml:"force,omitempty" json:"force,omitempty"`
}
