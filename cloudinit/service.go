package cloudinit

// Labels Berth reads on a service definition (RancherOS's names).
const (
	LabelScope        = "io.rancher.os.scope"        // "system" (default) or "user"
	LabelAfter        = "io.rancher.os.after"        // comma-separated service names
	LabelBefore       = "io.rancher.os.before"       // comma-separated service names
	LabelDetach       = "io.rancher.os.detach"       // "false": one-shot, waited for
	LabelCreateOnly   = "io.rancher.os.createonly"   // "true": create, never start
	LabelReloadConfig = "io.rancher.os.reloadconfig" // "true": restart when config changes
)

// Service is one service definition, in the compose subset RancherOS 1.x
// understood. In YAML, Command and Entrypoint take a string (split like a
// shell would) or a list; Environment takes a list (KEY=VALUE, KEY, or a
// glob KEY* passing matching rancher.environment entries) or a map; Labels
// take a map or a KEY=VALUE list.
type Service struct {
	Image       string            `yaml:"image,omitempty" json:"image,omitempty"`
	Command     []string          `yaml:"command,omitempty" json:"command,omitempty"`
	Entrypoint  []string          `yaml:"entrypoint,omitempty" json:"entrypoint,omitempty"`
	Environment []string          `yaml:"environment,omitempty" json:"environment,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Net, Pid, Ipc, Uts: "host", "none", "container:NAME" or "" (engine default).
	Net        string `yaml:"net,omitempty" json:"net,omitempty"`
	Pid        string `yaml:"pid,omitempty" json:"pid,omitempty"`
	Ipc        string `yaml:"ipc,omitempty" json:"ipc,omitempty"`
	Uts        string `yaml:"uts,omitempty" json:"uts,omitempty"`
	Privileged bool   `yaml:"privileged,omitempty" json:"privileged,omitempty"`
	// Restart is no, always, on-failure[:N] or unless-stopped.
	Restart       string            `yaml:"restart,omitempty" json:"restart,omitempty"`
	Volumes       []string          `yaml:"volumes,omitempty" json:"volumes,omitempty"`
	VolumesFrom   []string          `yaml:"volumes_from,omitempty" json:"volumes_from,omitempty"`
	CapAdd        []string          `yaml:"cap_add,omitempty" json:"cap_add,omitempty"`
	CapDrop       []string          `yaml:"cap_drop,omitempty" json:"cap_drop,omitempty"`
	Devices       []string          `yaml:"devices,omitempty" json:"devices,omitempty"`
	Ports         []string          `yaml:"ports,omitempty" json:"ports,omitempty"`
	ReadOnly      bool              `yaml:"read_only,omitempty" json:"read_only,omitempty"`
	Tmpfs         []string          `yaml:"tmpfs,omitempty" json:"tmpfs,omitempty"`
	User          string            `yaml:"user,omitempty" json:"user,omitempty"`
	WorkingDir    string            `yaml:"working_dir,omitempty" json:"working_dir,omitempty"`
	Hostname      string            `yaml:"hostname,omitempty" json:"hostname,omitempty"`
	ContainerName string            `yaml:"container_name,omitempty" json:"container_name,omitempty"`
	Tty           bool              `yaml:"tty,omitempty" json:"tty,omitempty"`
	StdinOpen     bool              `yaml:"stdin_open,omitempty" json:"stdin_open,omitempty"`
	SecurityOpt   []string          `yaml:"security_opt,omitempty" json:"security_opt,omitempty"`
	Ulimits       map[string]string `yaml:"ulimits,omitempty" json:"ulimits,omitempty"`
	LogDriver     string            `yaml:"log_driver,omitempty" json:"log_driver,omitempty"`
	LogOpt        map[string]string `yaml:"log_opt,omitempty" json:"log_opt,omitempty"`
	// MemLimit is bytes or a size such as "256m".
	MemLimit   string   `yaml:"mem_limit,omitempty" json:"mem_limit,omitempty"`
	DNS        []string `yaml:"dns,omitempty" json:"dns,omitempty"`
	ExtraHosts []string `yaml:"extra_hosts,omitempty" json:"extra_hosts,omitempty"`
}
