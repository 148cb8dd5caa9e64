package sysinit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/berthos/berth/cloudinit"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Labels Berth sets on the containers it creates.
const (
	// LabelService names the service a container runs; reconcile finds
	// its containers by it.
	LabelService = "io.berth.service"
	// LabelHash is a hash of the rendered spec; a different hash means the
	// container is recreated.
	LabelHash = "io.berth.hash"
	// LabelOptional marks a service that runs only when
	// rancher.services_include enables it by name.
	LabelOptional = "io.berth.optional"
)

// Scopes of a service: the engine it runs on.
const (
	ScopeSystem = "system"
	ScopeUser   = "user"
)

// UserDockerService is the system service that runs User Docker.
const UserDockerService = "docker"

// NetworkService is the service RancherOS applied rancher.network in; in
// Berth PID 1 applies it, and the service reports what it applied.
const NetworkService = "network"

// ResolveImages replaces ${VERSION} in every spec's image with version
// (the tag of the OS's images).
func ResolveImages(specs []Spec, version string) []Spec {
	out := make([]Spec, len(specs))
	for i, s := range specs {
		s.Service.Image = strings.ReplaceAll(s.Service.Image, "${VERSION}", ImageTag(version))
		out[i] = s
	}
	return out
}

// Spec is one service as Berth runs it: the definition plus what its
// io.rancher.os.* labels say.
type Spec struct {
	Name    string
	Service cloudinit.Service
	// Scope is ScopeSystem or ScopeUser.
	Scope string
	// After lists the services that must be up (or, for one-shots, have
	// finished successfully) before this one starts; Before entries of
	// other services are folded in.
	After []string
	// OneShot services run to completion; a non-zero exit stops what
	// comes after them.
	OneShot      bool
	CreateOnly   bool
	ReloadConfig bool
	// Files are the write_files entries with `container:` naming this
	// service; they are put into its container when it is created,
	// before it first starts.
	Files []cloudinit.WriteFile
}

// ContainerName is the name of the service's container.
func (s Spec) ContainerName() string {
	if s.Service.ContainerName != "" {
		return s.Service.ContainerName
	}
	return s.Name
}

// Hash identifies the rendered spec; a change of anything that the
// container is created from changes it.
func (s Spec) Hash() string {
	b, _ := json.Marshal(struct {
		Name    string
		Service cloudinit.Service
		Files   []cloudinit.WriteFile `json:",omitempty"`
	}{s.Name, s.Service, s.Files})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// UnplacedFiles are the write_files entries of cfg whose `container:`
// names no service cfg enables (a typo, or a disabled service): they are
// written nowhere, which the boot says.
func UnplacedFiles(cfg *cloudinit.Config) []cloudinit.WriteFile {
	names := map[string]bool{}
	for _, s := range Specs(cfg) {
		names[s.Name] = true
	}
	var out []cloudinit.WriteFile
	for _, f := range cfg.WriteFiles {
		if f.Container != "" && !names[f.Container] {
			out = append(out, f)
		}
	}
	return out
}

// UnknownIncludes are the names rancher.services_include sets true that
// no source defines a service for, even after looking in
// rancher.repositories (FetchServicesFiles), sorted. URLs are not names.
func UnknownIncludes(cfg *cloudinit.Config) []string {
	var out []string
	for name, on := range cfg.Rancher.ServicesInclude {
		if on && !cloudinit.IsServicesURL(name) && cfg.Rancher.Services[name] == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Specs renders the enabled services of cfg. A service is enabled unless
// it is in rancher.disable, services_include sets it false, or it is
// optional (label io.berth.optional) and services_include does not set it
// true. rancher.environment fills KEY and KEY* environment entries, and so
// do rancher.network's proxy keys (HTTP_PROXY, http_proxy, ...) where
// rancher.environment does not name them. User Docker gets those proxy
// variables without asking, as RancherOS's docker service did, unless
// its environment or rancher.docker.environment sets them.
func Specs(cfg *cloudinit.Config) []Spec {
	lookup := map[string]string{}
	var proxy []string // their names, for User Docker
	for _, kv := range cfg.Rancher.Network.ProxyEnv() {
		k, v, _ := strings.Cut(kv, "=")
		lookup[k] = v
		proxy = append(proxy, k)
	}
	maps.Copy(lookup, cfg.Rancher.Environment)
	disabled := map[string]bool{}
	for _, n := range cfg.Rancher.Disable {
		disabled[n] = true
	}
	byName := map[string]*Spec{}
	for name, svc := range cfg.Rancher.Services {
		if svc == nil || disabled[name] {
			continue
		}
		inc, listed := cfg.Rancher.ServicesInclude[name]
		if listed && !inc {
			continue
		}
		if svc.Labels[LabelOptional] == "true" && !inc {
			continue
		}
		sp := specOf(name, *svc, lookup)
		if name == UserDockerService {
			if len(sp.Service.Command) == 0 && len(sp.Service.Entrypoint) == 0 {
				// The user engine's flags come from rancher.docker, so a
				// change there changes the spec's hash and recreates it.
				sp.Service.Command = append([]string{"dockerd"}, DockerdArgs(cfg.Rancher.Docker, UserDockerDefaults())...)
				sp.Service.Environment = append(sp.Service.Environment, cfg.Rancher.Docker.Environment...)
			}
			sp.Service.Environment = addUnsetEnv(sp.Service.Environment, expandEnv(proxy, lookup))
		}
		sp.Files = cloudinit.ContainerFiles(cfg, name)
		byName[name] = sp
	}
	// After a service that is defined but disabled is satisfied (RancherOS
	// did the same): disabling ntp does not stop what comes after it. An
	// undefined name stays, and ordering reports it.
	// It is replaced by what it would have come after, so the order
	// around it holds.
	var resolve func(a string, seen map[string]bool) []string
	resolve = func(a string, seen map[string]bool) []string {
		def, defined := cfg.Rancher.Services[a]
		if !defined || byName[a] != nil || seen[a] {
			if seen[a] {
				return nil
			}
			return []string{a}
		}
		seen[a] = true
		var out []string
		if def != nil {
			for _, d := range splitList(def.Labels[cloudinit.LabelAfter]) {
				out = append(out, resolve(d, seen)...)
			}
		}
		return out
	}
	for _, s := range byName {
		var after []string
		for _, a := range s.After {
			for _, r := range resolve(a, map[string]bool{}) {
				if !contains(after, r) {
					after = append(after, r)
				}
			}
		}
		s.After = after
	}
	// before: X on A means A comes before X, i.e. X is after A.
	for name, s := range byName {
		for _, b := range splitList(s.Service.Labels[cloudinit.LabelBefore]) {
			if o, ok := byName[b]; ok && !contains(o.After, name) {
				o.After = append(o.After, name)
			}
		}
	}
	out := make([]Spec, 0, len(byName))
	for _, s := range byName {
		sort.Strings(s.After)
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func specOf(name string, svc cloudinit.Service, env map[string]string) *Spec {
	svc.Environment = expandEnv(svc.Environment, env)
	s := &Spec{
		Name:         name,
		Service:      svc,
		Scope:        ScopeSystem,
		After:        splitList(svc.Labels[cloudinit.LabelAfter]),
		OneShot:      svc.Labels[cloudinit.LabelDetach] == "false",
		CreateOnly:   svc.Labels[cloudinit.LabelCreateOnly] == "true",
		ReloadConfig: svc.Labels[cloudinit.LabelReloadConfig] == "true",
	}
	if svc.Labels[cloudinit.LabelScope] == ScopeUser {
		s.Scope = ScopeUser
	}
	return s
}

// expandEnv resolves RancherOS's environment forms: KEY=VALUE stays, KEY
// takes rancher.environment[KEY] (dropped when unset), KEY* takes every
// matching rancher.environment entry.
func expandEnv(list []string, env map[string]string) []string {
	var out []string
	for _, e := range list {
		if strings.Contains(e, "=") {
			out = append(out, e)
			continue
		}
		if strings.HasSuffix(e, "*") {
			keys := make([]string, 0, len(env))
			for k := range env {
				if ok, _ := path.Match(e, k); ok {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				out = append(out, k+"="+env[k])
			}
			continue
		}
		if v, ok := env[e]; ok {
			out = append(out, e+"="+v)
		}
	}
	return out
}

// addUnsetEnv appends to env the KEY=VALUE entries of more whose KEY env
// does not set.
func addUnsetEnv(env, more []string) []string {
	set := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for _, kv := range more {
		if k, _, _ := strings.Cut(kv, "="); !set[k] {
			env = append(env, kv)
		}
	}
	return env
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// createOptions renders a spec as the engine's container create request.
// Docker's own restart policy stays "no": PID 1 is the supervisor.
func createOptions(s Spec) (client.ContainerCreateOptions, error) {
	svc := s.Service
	labels := map[string]string{}
	for k, v := range svc.Labels {
		labels[k] = v
	}
	labels[LabelService] = s.Name
	labels[LabelHash] = s.Hash()
	cfg := &container.Config{
		Image:      svc.Image,
		Cmd:        svc.Command,
		Entrypoint: svc.Entrypoint,
		Env:        svc.Environment,
		Labels:     labels,
		User:       svc.User,
		WorkingDir: svc.WorkingDir,
		Hostname:   svc.Hostname,
		Tty:        svc.Tty,
		OpenStdin:  svc.StdinOpen,
	}
	hc := &container.HostConfig{
		Binds:          svc.Volumes,
		VolumesFrom:    svc.VolumesFrom,
		NetworkMode:    container.NetworkMode(svc.Net),
		PidMode:        container.PidMode(svc.Pid),
		IpcMode:        container.IpcMode(svc.Ipc),
		UTSMode:        container.UTSMode(svc.Uts),
		Privileged:     svc.Privileged,
		CapAdd:         svc.CapAdd,
		CapDrop:        svc.CapDrop,
		ReadonlyRootfs: svc.ReadOnly,
		SecurityOpt:    svc.SecurityOpt,
		ExtraHosts:     svc.ExtraHosts,
		LogConfig:      container.LogConfig{Type: svc.LogDriver, Config: svc.LogOpt},
	}
	if len(svc.Tmpfs) > 0 {
		hc.Tmpfs = map[string]string{}
		for _, t := range svc.Tmpfs {
			p, opts, _ := strings.Cut(t, ":")
			hc.Tmpfs[p] = opts
		}
	}
	for _, d := range svc.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return client.ContainerCreateOptions{}, fmt.Errorf("service %s: dns %q: %w", s.Name, d, err)
		}
		hc.DNS = append(hc.DNS, a)
	}
	for _, d := range svc.Devices {
		parts := strings.Split(d, ":")
		m := container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
		if len(parts) > 1 {
			m.PathInContainer = parts[1]
		}
		if len(parts) > 2 {
			m.CgroupPermissions = parts[2]
		}
		hc.Devices = append(hc.Devices, m)
	}
	if svc.MemLimit != "" {
		n, err := units.RAMInBytes(svc.MemLimit)
		if err != nil {
			return client.ContainerCreateOptions{}, fmt.Errorf("service %s: mem_limit %q: %w", s.Name, svc.MemLimit, err)
		}
		hc.Memory = n
	}
	names := make([]string, 0, len(svc.Ulimits))
	for k := range svc.Ulimits {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		soft, hard, _ := strings.Cut(svc.Ulimits[k], ":")
		sn, err := strconv.ParseInt(soft, 10, 64)
		if err != nil {
			return client.ContainerCreateOptions{}, fmt.Errorf("service %s: ulimit %s: %w", s.Name, k, err)
		}
		hn := sn
		if hard != "" {
			if hn, err = strconv.ParseInt(hard, 10, 64); err != nil {
				return client.ContainerCreateOptions{}, fmt.Errorf("service %s: ulimit %s: %w", s.Name, k, err)
			}
		}
		hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: k, Soft: sn, Hard: hn})
	}
	if len(svc.Ports) > 0 {
		return client.ContainerCreateOptions{}, fmt.Errorf("service %s: ports are not supported on system services; use net: host", s.Name)
	}
	return client.ContainerCreateOptions{Name: s.ContainerName(), Config: cfg, HostConfig: hc}, nil
}

// restartPolicy parses a compose restart value: whether to restart after
// an exit with code, given restarts so far.
func restartWanted(policy string, exitCode, restarts int) bool {
	name, max, _ := strings.Cut(policy, ":")
	switch name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		if exitCode == 0 {
			return false
		}
		if max == "" {
			return true
		}
		n, err := strconv.Atoi(max)
		return err != nil || restarts < n
	default: // "", "no"
		return false
	}
}

// ImageTag turns a Berth version (possibly a git describe string) into the
// tag its image tarballs carry; platforms/sysimages tags with the same rule.
func ImageTag(version string) string {
	var b strings.Builder
	for _, r := range version {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "dev"
	}
	return b.String()
}
