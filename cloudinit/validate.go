package cloudinit

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/berthos/berth/netconf"
)

// problem is an impossible value at a key path.
type problem struct {
	path keyPath
	msg  string
	drop keyPath // what to leave out, when not path itself
}

type problems []problem

func (ps *problems) add(p keyPath, format string, args ...any) {
	*ps = append(*ps, problem{path: p, msg: fmt.Sprintf(format, args...)})
}

// validate returns the impossible values of c, each at its key path.
func (c *Config) validate() []problem {
	var ps problems
	if c.Hostname != "" && !validHostname(c.Hostname) {
		ps.add(keyPath{"hostname"}, "%q is not a valid hostname", c.Hostname)
	}
	for i, f := range c.WriteFiles {
		f.validate(&ps, keyPath{"write_files"}.index(i))
	}
	for i, m := range c.Mounts {
		p := keyPath{"mounts"}.index(i)
		if m.Device == "" {
			ps.add(p, "mount needs a device")
		} else if m.MountPoint == "" && m.FSType != "swap" {
			ps.add(p, "mount of %s needs a mount point (or fstype swap)", m.Device)
		}
	}
	c.Rancher.validate(&ps, keyPath{"rancher"})
	return ps
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

func validHostname(h string) bool {
	return len(h) <= 253 && hostnameRE.MatchString(h)
}

// Encodings write_files accepts.
var writeFileEncodings = []string{"", "b64", "base64", "gz", "gzip", "gz+b64", "gz+base64", "gzip+b64", "gzip+base64"}

var permRE = regexp.MustCompile(`^0?[0-7]{3,4}$`)

func (f WriteFile) validate(ps *problems, p keyPath) {
	if f.Path == "" {
		ps.add(p, "write_files entry needs a path")
	} else if !strings.HasPrefix(f.Path, "/") {
		// The entry is useless without its path: leave it all out.
		*ps = append(*ps, problem{path: p.add("path"), msg: fmt.Sprintf("want an absolute path, got %q", f.Path), drop: p})
	}
	if !slices.Contains(writeFileEncodings, f.Encoding) {
		ps.add(p.add("encoding"), "unknown encoding %q (want one of b64, base64, gz, gzip, gz+b64, gzip+base64)", f.Encoding)
	} else if strings.Contains(f.Encoding, "b64") || strings.Contains(f.Encoding, "base64") {
		if _, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(f.Content), "")); err != nil {
			ps.add(p.add("content"), "content is not valid base64: %v", err)
		}
	}
	if f.Permissions != "" && !permRE.MatchString(f.Permissions) {
		ps.add(p.add("permissions"), "want octal permissions such as \"0644\", got %q", f.Permissions)
	}
}

// Datasource types RancherOS 1.x knew; Berth implements some of them and
// the datasources runner says which.
var datasourceTypes = []string{
	"*", "aliyun", "azure", "cloudstack", "cmdline", "configdrive", "digitalocean",
	"ec2", "exoscale", "file", "gce", "hetzner", "nocloud", "openstack", "packet",
	"proxmox", "url", "vmware",
}

func (r *Rancher) validate(ps *problems, p keyPath) {
	if _, err := r.Zram.Bytes(1 << 30); err != nil {
		ps.add(p.add("zram").add("size"), "%v", err)
	}
	if r.ShutdownTimeout < 0 {
		ps.add(p.add("shutdown_timeout"), "want a number of seconds >= 0, got %d", r.ShutdownTimeout)
	}
	ci := p.add("cloud_init")
	if r.CloudInit.Timeout < 0 {
		ps.add(ci.add("timeout"), "want a number of seconds >= 0, got %d", r.CloudInit.Timeout)
	}
	for i, ds := range r.CloudInit.Datasources {
		typ, arg, _ := strings.Cut(ds, ":")
		dp := ci.add("datasources").index(i)
		switch {
		case !slices.Contains(datasourceTypes, typ):
			ps.add(dp, "unknown datasource type %q", typ)
		case (typ == "url" || typ == "file") && arg == "":
			ps.add(dp, "datasource %s needs an argument (%s:LOCATION)", typ, typ)
		}
	}
	if r.SSH.Port != 0 && (r.SSH.Port < 1 || r.SSH.Port > 65535) {
		ps.add(p.addAll("ssh", "port"), "want a port 1-65535, got %d", r.SSH.Port)
	}
	if a := r.SSH.ListenAddress; a != "" {
		if _, err := netip.ParseAddr(a); err != nil {
			ps.add(p.addAll("ssh", "listen_address"), "want an IP address, got %q", a)
		}
	}
	for _, name := range sortedKeys(r.Services) {
		if s := r.Services[name]; s != nil {
			s.validate(ps, p.addAll("services", name))
		}
	}
	for _, name := range sortedKeys(r.Bootstrap) {
		if s := r.Bootstrap[name]; s != nil {
			s.validate(ps, p.addAll("bootstrap", name))
		}
	}
	networkProblems(&r.Network, ps, p.add("network"))
	networkProblems(&r.Defaults.Network, ps, p.addAll("defaults", "network"))
}

// addAll appends several keys.
func (p keyPath) addAll(segs ...string) keyPath {
	for _, s := range segs {
		p = p.add(s)
	}
	return p
}

var restartRE = regexp.MustCompile(`^(no|always|unless-stopped|on-failure(:[0-9]+)?)$`)

var namespaceRE = regexp.MustCompile(`^(|host|none|bridge|default|private|shareable|(container|service):.+)$`)

func (s *Service) validate(ps *problems, p keyPath) {
	if s.Restart != "" && !restartRE.MatchString(s.Restart) {
		ps.add(p.add("restart"), "want a restart policy (no, always, on-failure[:N], unless-stopped), got %q", s.Restart)
	}
	for key, v := range map[string]string{"net": s.Net, "pid": s.Pid, "ipc": s.Ipc, "uts": s.Uts} {
		if !namespaceRE.MatchString(v) {
			ps.add(p.add(key), "want host, none, bridge or container:NAME, got %q", v)
		}
	}
	for i, port := range s.Ports {
		if err := checkPortSpec(port); err != nil {
			ps.add(p.add("ports").index(i), "%v", err)
		}
	}
}

// checkPortSpec accepts compose's [[ip:]host:]container[/proto], ranges too.
func checkPortSpec(spec string) error {
	rest, proto, _ := strings.Cut(spec, "/")
	if proto != "" && proto != "tcp" && proto != "udp" && proto != "sctp" {
		return fmt.Errorf("unknown protocol %q in port %q", proto, spec)
	}
	// The container port is after the last colon; an IPv6 host address
	// is in brackets.
	parts := strings.Split(rest, ":")
	ports := parts
	if len(parts) > 2 {
		ports = parts[len(parts)-2:]
	}
	for i, pr := range ports {
		if pr == "" && i == 0 && len(ports) == 2 {
			continue // "ip::80": any host port
		}
		lo, hi, isRange := strings.Cut(pr, "-")
		for _, s := range []string{lo, hi} {
			if s == "" && !isRange {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("want a port 1-65535 in %q, got %q", spec, s)
			}
		}
	}
	return nil
}

// networkProblems checks a rancher.network with netconf's own rules, so
// that what ros config validate accepts is what netconf applies.
func networkProblems(n *netconf.Config, ps *problems, p keyPath) {
	for _, pr := range n.Validate() {
		ps.add(relPath(reflect.TypeOf(netconf.Config{}), p, pr.Path), "%s", pr.Message)
	}
}

var indexRE = regexp.MustCompile(`\[[0-9]+\]`)

// relPath turns a dotted path relative to a value of type t
// ("interfaces.eth1.100.addresses[1]") into a keyPath under base.
func relPath(t reflect.Type, base keyPath, rel string) keyPath {
	rel = indexRE.ReplaceAllStringFunc(rel, func(s string) string { return "." + s })
	segs := strings.Split(rel, ".")
	if p, _ := resolve(t, segs); p != nil {
		return append(base[:len(base):len(base)], p...)
	}
	return append(base[:len(base):len(base)], segs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
