package image

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ModName normalises a module name the way the kernel does ("-" -> "_").
func ModName(s string) string {
	s = strings.TrimSuffix(filepath.Base(s), ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// Module is one kernel module file and the modules it needs.
type Module struct {
	Name string   // normalised name
	Path string   // relative to the modules directory, "kernel/fs/ext4/ext4.ko"
	Deps []string // normalised names, from .modinfo depends= and softdep pre:
	// Aliases are the module's alias= patterns from .modinfo: the device
	// modaliases ("pci:v00001AF4d00001000sv*...") and the names the kernel
	// asks for when it autoloads ("fs-vfat", "rtnl-link-bridge",
	// "nft-chain-2-nat").
	Aliases []string
}

// ScanModules indexes every .ko under dir (lib/modules/<version>) by
// normalised name, reading each one's dependencies from its .modinfo
// section (Debian's package has no modules.dep; depmod makes it at install).
func ScanModules(dir string) (map[string]Module, error) {
	mods := map[string]Module{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := ModName(p)
		mods[name] = Module{Name: name, Path: rel}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan modules in %s: %w", dir, err)
	}
	return mods, nil
}

// readModinfo reads a module's dependencies (depends= and softdep pre:)
// and aliases from its .modinfo section.
func readModinfo(path string) (deps, aliases []string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, nil, nil
	}
	data, err := s.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("read .modinfo of %s: %w", path, err)
	}
	deps, aliases = parseModinfo(data)
	return deps, aliases, nil
}

// parseModinfo returns the dependencies and aliases named in a .modinfo
// section: NUL separated key=value strings.
func parseModinfo(data []byte) (deps, aliases []string) {
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "alias":
			if v != "" {
				aliases = append(aliases, v)
			}
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					deps = append(deps, ModName(d))
				}
			}
		case "softdep":
			// "pre: crc32c post: foo"; only pre-dependencies must load first.
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						deps = append(deps, ModName(w))
					}
				}
			}
		}
	}
	return deps, aliases
}

// Closure returns the modules named (and everything they depend on) in
// load order, dependencies first. A name ending in "/" is a directory
// relative to dir ("kernel/net/netfilter/"): every module under it. Names
// that are not modules (built into the kernel, or a crypto alias such as
// crc32c) are returned in missing.
func Closure(dir string, mods map[string]Module, names []string) (order []Module, missing []string, err error) {
	names = expandDirs(mods, names)
	seen := map[string]bool{}
	var visit func(n string) error
	visit = func(n string) error {
		n = ModName(n)
		if seen[n] {
			return nil
		}
		seen[n] = true
		m, ok := mods[n]
		if !ok {
			missing = append(missing, n)
			return nil
		}
		deps, aliases, err := readModinfo(filepath.Join(dir, m.Path))
		if err != nil {
			return err
		}
		m.Deps, m.Aliases = deps, aliases
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		order = append(order, m)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, nil, err
		}
	}
	return order, missing, nil
}

// expandDirs replaces each directory name (ending in "/") by the names of
// the modules under it, sorted.
func expandDirs(mods map[string]Module, names []string) []string {
	var out []string
	for _, n := range names {
		if !strings.HasSuffix(n, "/") {
			out = append(out, n)
			continue
		}
		var under []string
		for name, m := range mods {
			if strings.HasPrefix(m.Path, n) {
				under = append(under, name)
			}
		}
		sort.Strings(under)
		out = append(out, under...)
	}
	return out
}

// ModulesAlias renders modules.alias lines ("alias PATTERN module") for the
// given modules, sorted, as depmod writes them.
func ModulesAlias(mods []Module) []byte {
	var lines []string
	for _, m := range mods {
		for _, a := range m.Aliases {
			lines = append(lines, "alias "+a+" "+m.Name+"\n")
		}
	}
	sort.Strings(lines)
	return []byte(strings.Join(lines, ""))
}

// ModulesDep renders modules.dep lines ("path: dep-path ...") for the
// given modules, sorted by path so the output is reproducible. Deps that
// are not in the set (built in) are left out.
func ModulesDep(mods []Module) []byte {
	byName := map[string]Module{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	sorted := append([]Module(nil), mods...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var b bytes.Buffer
	for _, m := range sorted {
		b.WriteString(m.Path + ":")
		for _, d := range m.Deps {
			if dm, ok := byName[d]; ok {
				b.WriteString(" " + dm.Path)
			}
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// CopyModules copies the modules' files from src to dst (both
// lib/modules/<version> directories) and writes dst/modules.dep and
// dst/modules.alias.
func CopyModules(src, dst string, mods []Module) error {
	for _, m := range mods {
		data, err := os.ReadFile(filepath.Join(src, m.Path))
		if err != nil {
			return fmt.Errorf("copy module %s: %w", m.Name, err)
		}
		out := filepath.Join(dst, m.Path)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return fmt.Errorf("copy module %s: %w", m.Name, err)
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return fmt.Errorf("copy module %s: %w", m.Name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "modules.dep"), ModulesDep(mods), 0o644); err != nil {
		return fmt.Errorf("write modules.dep: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dst, "modules.alias"), ModulesAlias(mods), 0o644); err != nil {
		return fmt.Errorf("write modules.alias: %w", err)
	}
	return nil
}
