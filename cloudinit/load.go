package cloudinit

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed defaults/*.yml
var defaultsFS embed.FS

// Paths of the configuration sources on the machine, in precedence order
// (lowest first) after the built-in defaults.
const (
	OEMConfigPath   = "/usr/share/ros/oem/oem-config.yml"
	MetadataPath    = "/var/lib/rancher/conf/metadata"
	CloudConfigDir  = "/var/lib/rancher/conf/cloud-config.d"
	BootConfigPath  = "/var/lib/rancher/conf/cloud-config.d/boot.yml"
	LocalConfigPath = "/var/lib/rancher/conf/cloud-config.yml"
	CmdlinePath     = "/proc/cmdline"
)

// DefaultsTree returns the built-in defaults (every embedded
// defaults/*.yml merged in name order) and what checking them found.
func DefaultsTree() (*yaml.Node, *Report) {
	rep := &Report{}
	acc := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	names, _ := fs.Glob(defaultsFS, "defaults/*.yml")
	sort.Strings(names)
	for _, name := range names {
		data, err := defaultsFS.ReadFile(name)
		if err != nil {
			rep.add(true, "builtin:"+path.Base(name), nil, "", "%v", err)
			continue
		}
		acc = layer(acc, "builtin:"+path.Base(name), data, rep)
	}
	return acc, rep
}

// layer parses one source, checks it and merges what is good into acc. A
// source that is not YAML at all is skipped whole, with a report error.
func layer(acc *yaml.Node, source string, data []byte, rep *Report) *yaml.Node {
	return layerAt(acc, source, data, rep, nil)
}

// layerAt is layer for a source whose document sits at a key path of the
// config (a services file, under rancher.services): wrap nests it there
// before it is checked, so reports name the full key path and the
// source's own lines.
func layerAt(acc *yaml.Node, source string, data []byte, rep *Report, wrap []string) *yaml.Node {
	tree, dups, err := parseTree(source, data)
	rep.Entries = append(rep.Entries, dups...)
	if err != nil {
		e := Entry{Error: true, Source: source, Message: "file skipped: " + err.Error()}
		var se *SyntaxError
		if errors.As(err, &se) {
			e.Line, e.Column, e.Message = se.Line, se.Column, "file skipped: "+se.Message
		}
		rep.Entries = append(rep.Entries, e)
		return acc
	}
	for i := len(wrap) - 1; i >= 0; i-- {
		key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: wrap[i]}
		tree = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{key, tree}}
	}
	_, r := check(source, tree)
	rep.Merge(r)
	return mergeTree(acc, tree)
}

// LoadTree merges the configuration sources under root into one document,
// in the precedence of ARCHITECTURE.md: built-in defaults, OEM, metadata,
// cloud-config.d/boot.yml (user-data, with $public_ipv4 and friends
// substituted from the metadata), the other cloud-config.d/*.yml in name
// order, the local cloud-config.yml and root/proc/cmdline. Missing files
// are skipped; bad keys are reported and left out, so the machine boots
// with the rest. The error is only for a source that exists but cannot be
// read.
func LoadTree(root string) (*yaml.Node, *Report, error) {
	acc, rep := DefaultsTree()
	user, rep, err := loadOver(root, &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, rep)
	acc = includeServices(root, acc, Decode(user).Rancher.ServicesInclude, rep)
	return mergeTree(acc, user), rep, err
}

// ServicesIncludeDir holds the services files that
// `rancher.services_include` keys name, as the boot last fetched them
// (ServicesFilePath): a URL's file, or a name's file found in
// rancher.repositories. The config loader reads them from there, so a
// machine that cannot reach a URL or a repository keeps its services.
const ServicesIncludeDir = "/var/lib/rancher/conf/services_include"

// IsServicesURL reports whether a services_include key is a URL (http or
// https) of a services file rather than a service's name.
func IsServicesURL(key string) bool {
	return strings.HasPrefix(key, "http://") || strings.HasPrefix(key, "https://")
}

// ServicesFilePath is where the services file of a services_include key
// (a URL, or a name fetched from a repository) is kept. A name's file is
// keyed by the name, not by the repository it came from, so reordering
// rancher.repositories keeps it.
func ServicesFilePath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return path.Join(ServicesIncludeDir, hex.EncodeToString(sum[:8])+".yml")
}

// ServicesURLs are the services_include URLs set true, sorted.
func ServicesURLs(include map[string]bool) []string {
	var out []string
	for k, on := range include {
		if on && IsServicesURL(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// RepositoryURLs are the URLs where the repositories (a services index
// laid out as RancherOS's os-services: URL/k/kernel-headers.yml) would
// hold the services file of the service called name, in the order of the
// repositories' names. A name that cannot be a file's name (empty, or
// with a slash) has none.
func RepositoryURLs(repos map[string]Repository, name string) []string {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\") || IsServicesURL(name) {
		return nil
	}
	bases := repositoryBases(repos)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(bases)) {
		out = append(out, bases[k]+"/"+repositoryPath(name))
	}
	return out
}

// RepositoryIndexURLs are the URLs of the repositories' indexes
// (URL/index.yml, RancherOS's list of the services a repository holds),
// keyed by repository name.
func RepositoryIndexURLs(repos map[string]Repository) map[string]string {
	out := repositoryBases(repos)
	for k, u := range out {
		out[k] = u + "/index.yml"
	}
	return out
}

// repositoryBases are the repositories' URLs without a trailing slash,
// by name; one with no URL is left out.
func repositoryBases(repos map[string]Repository) map[string]string {
	out := map[string]string{}
	for k, r := range repos {
		if u := strings.TrimRight(r.URL, "/"); u != "" {
			out[k] = u
		}
	}
	return out
}

// repositoryPath is where a repository holds the services file of the
// service called name: k/kernel-headers.yml.
func repositoryPath(name string) string {
	return name[:1] + "/" + name + ".yml"
}

// includeServices layers the kept services file of each key include sets
// true over acc (the built-in defaults), in key order: a services file is
// what RancherOS read from a URL key, or from a repository for a name, a
// map of service name to service (the shape of rancher.services). Every
// user source goes over them, so rancher.services can still change an
// included service. A key not fetched yet (and a built-in service's
// name, which is never fetched) adds nothing.
func includeServices(root string, acc *yaml.Node, include map[string]bool, rep *Report) *yaml.Node {
	for _, k := range slices.Sorted(maps.Keys(include)) {
		if !include[k] || k == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, ServicesFilePath(k)))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				rep.add(true, k, nil, "rancher.services_include."+k, "services file: %v", err)
			}
			continue
		}
		source := k
		if !IsServicesURL(k) {
			source = repositoryPath(k)
		}
		acc = layerAt(acc, source, data, rep, []string{"rancher", "services"})
	}
	return acc
}

// IsConfigSource reports whether a file at path (absolute, on the
// machine) is one LoadTree reads: the OEM config, the metadata, a
// cloud-config.d/*.yml or the local cloud-config.yml. A write_files entry
// with such a path changes the config of the boot that writes it.
func IsConfigSource(p string) bool {
	p = path.Clean(p)
	switch p {
	case OEMConfigPath, MetadataPath, LocalConfigPath:
		return true
	}
	return path.Dir(p) == CloudConfigDir && strings.HasSuffix(p, ".yml")
}

// loadOver merges the sources under root (all but the built-in defaults
// and the services files) over acc.
func loadOver(root string, acc *yaml.Node, rep *Report) (*yaml.Node, *Report, error) {
	var errs []error
	read := func(p string) ([]byte, bool) {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("load config: %w", err))
			}
			return nil, false
		}
		return data, true
	}
	if data, ok := read(OEMConfigPath); ok {
		acc = layer(acc, OEMConfigPath, data, rep)
	}
	var meta *Metadata
	if data, ok := read(MetadataPath); ok {
		m := &Metadata{}
		if err := yaml.Unmarshal(data, m); err != nil {
			rep.add(true, MetadataPath, nil, "", "file skipped: %v", err)
		} else {
			meta = m
			tree := metadataTree(m)
			_, r := check(MetadataPath, tree)
			rep.Merge(r)
			acc = mergeTree(acc, tree)
		}
	}
	if data, ok := read(BootConfigPath); ok {
		acc = layer(acc, BootConfigPath, Substitute(data, meta), rep)
	}
	entries, err := os.ReadDir(filepath.Join(root, CloudConfigDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("load config: %w", err))
	}
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".yml") || name == path.Base(BootConfigPath) {
			continue
		}
		p := path.Join(CloudConfigDir, name)
		if data, ok := read(p); ok {
			acc = layer(acc, p, data, rep)
		}
	}
	if data, ok := read(LocalConfigPath); ok {
		acc = layer(acc, LocalConfigPath, data, rep)
	}
	if data, ok := read(CmdlinePath); ok {
		tree := CmdlineTree(string(data))
		_, r := check(CmdlineSource, tree)
		rep.Merge(r)
		acc = mergeTree(acc, tree)
	}
	return acc, rep, errors.Join(errs...)
}

// Load builds the merged, validated snapshot of this boot from the files
// under root (see LoadTree).
func Load(root string) (*Config, *Report, error) {
	tree, rep, err := LoadTree(root)
	return Decode(tree), rep, err
}

// Decode turns a checked (or merged) document into a Config, ignoring
// what does not fit: use Parse to learn what that was.
func Decode(tree *yaml.Node) *Config {
	return decodeQuiet(tree)
}

// metadataTree is the config a datasource's metadata gives: hostname,
// SSH keys and network.
func metadataTree(m *Metadata) *yaml.Node {
	c := Config{Hostname: m.Hostname, SSHAuthorizedKeys: m.SSHPublicKeys}
	if c.Hostname == "" {
		c.Hostname = m.LocalHostname
	}
	if m.Network != nil {
		c.Rancher.Network = *m.Network
	}
	var n yaml.Node
	if err := n.Encode(c); err != nil || n.Kind != yaml.MappingNode {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	return &n
}
