package bootstrap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultModules are loaded on every boot (those missing from the image
// are skipped): the drivers qemu and the clouds present, and what Docker
// and netconf need.
func DefaultModules() []string {
	return []string{
		"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_rng", "virtio_console",
		"ata_piix", "ahci", "sd_mod", "sr_mod",
		"loop", "squashfs", "overlay", "crc32c_generic", "crc32c_intel", "ext4", "isofs", "vfat", "nls_utf8", "nls_cp437", "nls_iso8859_1",
		"bridge", "br_netfilter", "veth", "8021q", "bonding", "tun",
		"button", "evdev", "nfnetlink",
	}
}

// ModuleDeps is a parsed modules.dep: normalised name -> file (relative to
// the modules directory) and the names it needs.
type ModuleDeps struct {
	dir  string
	path map[string]string
	deps map[string][]string
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

// LoadModuleDeps reads dir/modules.dep.
func LoadModuleDeps(dir string) (*ModuleDeps, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("open modules.dep: %w", err)
	}
	defer f.Close()
	return ParseModulesDep(dir, f)
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
			err := finitModule(filepath.Join(md.dir, f))
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

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}
