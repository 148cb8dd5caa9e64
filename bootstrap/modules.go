package bootstrap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultModules are loaded on every boot before the state disk is looked
// for (those missing from the image are skipped): the drivers qemu and the
// clouds present, the filesystems of the state disk and the config
// drives, and overlay for System Docker. The rest wait for LaterModules.
func DefaultModules() []string {
	return []string{
		"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_rng", "virtio_console",
		"ata_piix", "ahci", "sd_mod", "sr_mod",
		"loop", "squashfs", "overlay", "crc32c_generic", "crc32c_intel", "ext4", "isofs", "vfat", "nls_utf8", "nls_cp437", "nls_iso8859_1",
	}
}

// LaterModules are loaded on every boot too, but in the background from
// the system image, as EngineModules are, since nothing on the way to
// System Docker needs them: the link types netconf makes (a bridge, a
// VLAN, a bond, a tun; a network config that asks for one before they
// are in has the kernel load it through its autoloader, which is ros
// modprobe, bonding's max_bonds=0 included), the ACPI power button and
// input events (watched once they appear), and nfnetlink. They are 1.8
// MB of modules (bonding brings tls) that the boot no longer loads, nor
// the initramfs carries and copies, before the state disk.
func LaterModules() []string {
	return []string{"bridge", "br_netfilter", "veth", "8021q", "bonding", "tun", "button", "evdev", "nfnetlink"}
}

// moduleOptions are the parameters a module loads with when the caller
// gives it none, as modprobe.d's options lines: bonding makes no bond0 of
// its own (its default is one), so the only bonds are those the network
// config asks for, whichever path loads it first (the boot's list,
// rancher.modules, or the kernel asking for rtnl-link-bond).
func moduleOptions() map[string]string {
	return map[string]string{"bonding": "max_bonds=0"}
}

// BootModules are the modules the initramfs carries: what reaches the
// system image (MediaModules), what PID 1 loads on every boot
// (DefaultModules) and the drivers of some machines' disks
// (DeviceModules), so that none of them waits on the system image's
// decompression. The system image carries every module, and once these
// are loaded its copy replaces the initramfs's (UseSystemModules).
func BootModules() []string {
	return append(append(MediaModules(), DefaultModules()...), DeviceModules()...)
}

// DeviceModules are drivers for devices only some machines have, which
// Coldplug loads when such a device is there and nothing else loads (on
// other machines they would fail with ENODEV): Xen's block and network
// frontends, the root disk (xvda) and the NIC of the Xen-based EC2
// instance types (t2, m4, c4 and older). The initramfs carries them so
// that an installed disk on Xen finds its system image.
func DeviceModules() []string {
	return []string{"xen_blkfront", "xen_netfront"}
}

// EngineModules are what User Docker's bridge network, NAT and published
// ports ask the kernel for (iptables-nft's tables, chains and xtables
// matches, conntrack, br_netfilter). PID 1 loads them in the background
// during the boot, all at once and in-process, so that dockerd's first
// iptables calls do not wait on the kernel's autoloader starting
// /sbin/modprobe once per module.
func EngineModules() []string {
	return []string{
		"nf_tables", "nft_compat", "nft_chain_nat", "nft_nat", "nft_masq", "nft_ct",
		"nf_nat", "nf_conntrack", "xt_conntrack", "xt_addrtype", "xt_MASQUERADE", "xt_nat",
		"xt_tcpudp", "xt_comment", "xt_mark", "br_netfilter", "veth",
		// libnetwork opens a NETLINK_XFRM socket with the first container.
		"xfrm_user",
	}
}

// ModuleDeps is a parsed modules.dep: normalised name -> file (relative to
// the modules directory) and the names it needs.
type ModuleDeps struct {
	dir  string
	path map[string]string
	deps map[string][]string
	// aliases are modules.alias's patterns, normalised, in file order.
	aliases []moduleAlias
}

type moduleAlias struct{ pattern, module string }

// normaliseAlias turns "-" into "_" outside brackets, as kmod does, so
// that "fs-vfat" and "fs_vfat" match alike and "[0-9]" stays a range.
func normaliseAlias(s string) string {
	b := []byte(s)
	depth := 0
	for i, c := range b {
		switch {
		case c == '[':
			depth++
		case c == ']' && depth > 0:
			depth--
		case c == '-' && depth == 0:
			b[i] = '_'
		}
	}
	return string(b)
}

// ParseAliases adds the aliases of a modules.alias ("alias PATTERN
// module" lines) read from r.
func (md *ModuleDeps) ParseAliases(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "alias" {
			continue
		}
		md.aliases = append(md.aliases, moduleAlias{normaliseAlias(f[1]), modName(f[2])})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read modules.alias: %w", err)
	}
	return nil
}

// Resolve returns the modules a name asks for: the module itself when it
// is one, else every module with an alias matching it (a device's
// modalias, or a name the kernel requests such as "fs-vfat" or
// "nft-chain-2-nat"), each once, in modules.alias order. Nil when nothing
// matches.
func (md *ModuleDeps) Resolve(name string) []string {
	if n := modName(name); md.path[n] != "" {
		return []string{n}
	}
	want := normaliseAlias(name)
	var out []string
	seen := map[string]bool{}
	for _, a := range md.aliases {
		if seen[a.module] {
			continue
		}
		if ok, err := path.Match(a.pattern, want); err == nil && ok {
			seen[a.module] = true
			out = append(out, a.module)
		}
	}
	return out
}

func modName(p string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
}

// ParseModulesDep reads a modules.dep ("path: dep-path ...") from r; dir is
// the directory the paths are relative to.
func ParseModulesDep(dir string, r io.Reader) (*ModuleDeps, error) {
	md := &ModuleDeps{dir: dir, path: map[string]string{}, deps: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n := modName(p)
		md.path[n] = p
		for _, d := range strings.Fields(rest) {
			md.deps[n] = append(md.deps[n], modName(d))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return md, nil
}

// KernelModuleDir is the running kernel's module directory,
// /lib/modules/RELEASE.
func KernelModuleDir() (string, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:])), nil
}

// LoadModuleDeps reads dir/modules.dep and, when there is one,
// dir/modules.alias.
func LoadModuleDeps(dir string) (*ModuleDeps, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("open modules.dep: %w", err)
	}
	defer f.Close()
	md, err := ParseModulesDep(dir, f)
	if err != nil {
		return nil, err
	}
	a, err := os.Open(filepath.Join(dir, "modules.alias"))
	if errors.Is(err, os.ErrNotExist) {
		return md, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open modules.alias: %w", err)
	}
	defer a.Close()
	return md, md.ParseAliases(a)
}

// Order returns the files to load for the named modules, dependencies
// first, each once. Unknown names are returned in missing.
func (md *ModuleDeps) Order(names []string) (files []string, missing []string) {
	seen := map[string]bool{}
	var visit func(n string)
	visit = func(n string) {
		n = modName(n)
		if seen[n] {
			return
		}
		seen[n] = true
		p, ok := md.path[n]
		if !ok {
			missing = append(missing, n)
			return
		}
		for _, d := range md.deps[n] {
			visit(d)
		}
		files = append(files, p)
	}
	for _, n := range names {
		visit(n)
	}
	return files, missing
}

// LoadModules loads the named modules and their dependencies with
// finit_module, each as soon as its dependencies are in, several at once
// (module init is mostly probing hardware, which overlaps well). A module
// already loaded or built in is fine; an unknown name or a failed load is
// logged and the rest go on. It returns the number loaded and the first
// error.
func LoadModules(log *Logger, md *ModuleDeps, names []string) (int, error) {
	return LoadModulesParams(log, md, names, nil)
}

// LoadModulesParams is LoadModules with module parameters ("max_bonds=0"),
// by module name, for the modules that are given some; the others load
// with moduleOptions'.
func LoadModulesParams(log *Logger, md *ModuleDeps, names []string, params map[string]string) (int, error) {
	opts := moduleOptions()
	files, missing := md.Order(names)
	for _, m := range missing {
		log.Printf("module %s: not in modules.dep (built in or not shipped)", m)
	}
	done := map[string]chan struct{}{}
	for _, f := range files {
		done[modName(f)] = make(chan struct{})
	}
	var (
		mu    sync.Mutex
		first error
		n     int
		wg    sync.WaitGroup
		slots = make(chan struct{}, 4)
	)
	for _, f := range files {
		name := modName(f)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[name])
			for _, d := range md.deps[name] {
				if ch, ok := done[d]; ok {
					<-ch
				}
			}
			slots <- struct{}{}
			p, ok := params[name]
			if !ok {
				p = opts[name]
			}
			err := finitModule(filepath.Join(md.dir, f), p)
			<-slots
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				n++
			case errors.Is(err, unix.EEXIST):
			default:
				log.Printf("%v", err)
				if first == nil {
					first = err
				}
			}
		}()
	}
	wg.Wait()
	return n, first
}

func finitModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// DeviceAliases returns the modaliases of the devices under sysDir
// (/sys): each bus/*/devices/*/modalias, once, sorted.
func DeviceAliases(sysDir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(sysDir, "bus", "*", "devices", "*", "modalias"))
	if err != nil {
		return nil, fmt.Errorf("list device modaliases: %w", err)
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the device went away
		}
		if a := strings.TrimSpace(string(b)); a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Coldplug loads the drivers of the devices already present, as udev's
// coldplug would before there is a udev: each device's modalias resolved
// through modules.alias. It goes round again while a round loaded
// something, since a bus driver (virtio_pci, an HBA) brings devices of
// its own (the virtio NIC and disk behind it), at most four rounds. It
// returns the number of modules loaded.
func Coldplug(log *Logger, md *ModuleDeps, sysDir string) (int, error) {
	done := map[string]bool{}
	total := 0
	var errs []error
	for round := 0; round < 4; round++ {
		aliases, err := DeviceAliases(sysDir)
		if err != nil {
			return total, err
		}
		var names []string
		for _, a := range aliases {
			if done[a] {
				continue
			}
			done[a] = true
			names = append(names, md.Resolve(a)...)
		}
		if len(names) == 0 {
			break
		}
		n, err := LoadModules(log, md, names)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
		if n == 0 {
			break
		}
	}
	return total, errors.Join(errs...)
}

// UseSystemModules makes dir (the running kernel's module directory, on
// the root tmpfs) show the system image's copy of it, sys: the files
// under dir are removed, which gives their RAM back, and sys is bound
// read-only over it. The initramfs carries only BootModules; the system
// image carries them all. It
// returns how many bytes of files it removed; when sys does not exist (an
// image from before the split) it changes nothing.
func UseSystemModules(sys, dir string) (int64, error) {
	if _, err := os.Stat(filepath.Join(sys, "modules.dep")); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("system modules: %w", err)
	}
	var freed int64
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				freed += info.Size()
			}
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return 0, fmt.Errorf("system modules: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return freed, fmt.Errorf("system modules: %w", err)
	}
	if err := unix.Mount(sys, dir, "", unix.MS_BIND, ""); err != nil {
		return freed, fmt.Errorf("system modules: bind %s on %s: %w", sys, dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return freed, fmt.Errorf("system modules: read-only %s: %w", dir, err)
	}
	return freed, nil
}
