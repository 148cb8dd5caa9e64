package cloudinit

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
	return loadOver(root, acc, rep)
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

// loadOver merges the sources under root over acc (the built-in defaults).
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
