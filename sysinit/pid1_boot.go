package sysinit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthos/berth/bootstrap"
	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources"
	"github.com/berthos/berth/netconf"
)

// PID1ReadyLine is printed on the console when the boot is complete; the
// e2e tests and `make run` wait for it.
const PID1ReadyLine = "Berth is up"

// pid1Boot is the state of the boot process.
type pid1Boot struct {
	log     *bootstrap.Logger
	tl      *bootstrap.Timeline
	cmdline string
	// early is the config of the kernel command line alone: what is
	// known before the state disk (rancher.state, rancher.modules).
	early *cloudinit.Config
	// cfg is the snapshot of this boot once loaded (nil before).
	cfg *cloudinit.Config

	version  string
	slog     *slog.Logger
	earlyNet *netconf.State
	// life is the context of what outlives the boot (lease renewals).
	life context.Context

	mu sync.Mutex
	// stops run in reverse order at shutdown: User Docker, then the
	// services, then System Docker.
	stops []pid1Stop
	// running is System Docker and the services once started (nil
	// before); SIGHUP reloads them.
	running *Engines

	// system is System Docker started from the local config while the
	// network and the datasources are waited for; systemErr is why it did
	// not start. Both are set when systemDone is closed.
	system     *Engines
	systemErr  error
	systemDone chan struct{}

	// cieDone is closed when cloud-init-execute has finished, cieErr
	// then saying how.
	cieDone chan struct{}
	cieErr  error

	// laterBinds are the indexes in cfg.Mounts of the binds whose
	// source write_files may make (mounts, writeFiles).
	laterBinds []int

	// md is the kernel's module index, read once (moduleDeps).
	md *bootstrap.ModuleDeps

	// stateDev is the state disk's device once mounted ("" running from
	// RAM).
	stateDev string

	// stopping is set when shutdown begins: the console shells are not
	// started again once they end.
	stopping atomic.Bool
}

// moduleDeps reads the running kernel's modules.dep and modules.alias
// the first time it is called: a boot from berth.iso needs them for the
// boot medium's drivers before the modules phase.
func (b *pid1Boot) moduleDeps() (*bootstrap.ModuleDeps, error) {
	if b.md != nil {
		return b.md, nil
	}
	dir, err := bootstrap.KernelModuleDir()
	if err != nil {
		return nil, err
	}
	md, err := bootstrap.LoadModuleDeps(dir)
	if err != nil {
		return nil, err
	}
	b.md = md
	return md, nil
}

type pid1Stop struct {
	name string
	fn   func(ctx context.Context) error
}

// pid1Phase is one named step of the boot.
type pid1Phase struct {
	name string
	// fatal phases drop to the emergency shell when they fail; the others
	// log and the boot goes on.
	fatal bool
	run   func(b *pid1Boot, ctx context.Context) error
}

// RunPID1Boot is the boot process that RunPID1 starts. Its steps, in
// order (pid1Phases): the system image at /usr, kernel modules, entropy,
// /etc basics, the unattended install when the command line asks for one
// (which ends in a poweroff), the state disk, the config snapshot, hostname, then the
// engines; then it writes the boot timeline, prints PID1ReadyLine and
// waits for a power signal, on which it stops User Docker, the services
// and System Docker within rancher.shutdown_timeout and ends the machine.
// A fatal phase's error starts an emergency shell on the console. It
// never returns.
func RunPID1Boot(version string) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR)
	power := make(chan PID1Action, 4)
	go func() {
		for s := range sigs {
			power <- pid1ActionOf(s.(unix.Signal))
		}
	}()

	b := &pid1Boot{log: bootstrap.NewLogger(pid1Console()), tl: bootstrap.NewTimeline(), version: version, cieDone: make(chan struct{})}
	b.slog = slog.New(slog.NewTextHandler(&pid1Lines{log: b.log}, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
	if s := os.Getenv(pid1TimelineEnv); s != "" {
		_ = json.Unmarshal([]byte(s), &b.tl.Phases)
	}
	os.Unsetenv(pid1TimelineEnv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.life = ctx

	go func() {
		defer func() {
			if r := recover(); r != nil {
				b.log.Printf("recovered from a panic in the boot: %v", r)
			}
		}()
		if err := b.run(ctx); err != nil {
			pid1WaitShell(b.log, err)
			return
		}
		b.tl.Mark("ready")
		if err := b.tl.Save(bootstrap.TimelinePath); err != nil {
			b.log.Printf("%v", err)
		}
		b.log.Printf("%s (%.3f s since the kernel started)", PID1ReadyLine, bootstrap.Uptime().Seconds())
		b.autologin()
		// RancherOS's start.sh and rc.local, in the background: they may
		// wait (wait-for-docker) or never end.
		go func() { _ = RunBootScripts(ctx, b.slog, "/", BootScriptsLog, BootScripts()) }()
	}()
	go b.watchPowerButton(power)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, unix.SIGHUP)
	go func() {
		for range hup {
			b.reload(ctx)
		}
	}()

	a := <-power
	cancel()
	b.shutdown(a)
}

// pid1Phases is the boot, in order.
func pid1Phases() []pid1Phase {
	return []pid1Phase{
		{name: "cmdline", fatal: true, run: (*pid1Boot).readCmdline},
		{name: "system image", fatal: true, run: (*pid1Boot).systemImage},
		{name: "modules", run: (*pid1Boot).loadModules},
		{name: "entropy", run: (*pid1Boot).entropy},
		{name: "etc", run: (*pid1Boot).etc},
		{name: "unattended install", run: (*pid1Boot).unattendedInstall},
		{name: "state disk", fatal: true, run: (*pid1Boot).stateDisk},
		{name: "config (local)", run: (*pid1Boot).loadConfig},
		{name: "zram", run: (*pid1Boot).zram},
		{name: "system docker (background)", run: (*pid1Boot).startSystemDocker},
		{name: "network (early)", run: (*pid1Boot).networkEarly},
		{name: "datasources", run: (*pid1Boot).datasources},
		{name: "config", run: (*pid1Boot).loadConfig},
		{name: "modules (config)", run: (*pid1Boot).configModules},
		{name: "mounts (config)", run: (*pid1Boot).mounts},
		{name: "resize state (background)", run: (*pid1Boot).resizeState},
		{name: "write_files", run: (*pid1Boot).writeFiles},
		{name: "network", run: (*pid1Boot).network},
		{name: "services_include", run: (*pid1Boot).servicesInclude},
		{name: "bootcmd", run: (*pid1Boot).bootcmd},
		{name: "cloud-init-execute (background)", run: (*pid1Boot).cloudInitExecute},
		{name: "engines", fatal: true, run: (*pid1Boot).engines},
	}
}

func (b *pid1Boot) run(ctx context.Context) error {
	for _, p := range pid1Phases() {
		b.log.Printf("phase %s", p.name)
		start := time.Now()
		end := b.tl.Begin(p.name)
		err := p.run(b, ctx)
		end(err)
		switch {
		case err != nil && p.fatal:
			return fmt.Errorf("phase %s: %w", p.name, err)
		case err != nil:
			b.log.Printf("phase %s: %v (going on)", p.name, err)
		default:
			b.log.Printf("phase %s done (%s)", p.name, time.Since(start).Round(time.Millisecond))
		}
	}
	return nil
}

func (b *pid1Boot) readCmdline(ctx context.Context) error {
	data, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read /proc/cmdline: %w", err)
	}
	b.cmdline = strings.TrimSpace(string(data))
	cfg, rep := cloudinit.ParseCmdline(b.cmdline)
	if rep != nil {
		for _, e := range rep.Entries {
			b.log.Printf("cmdline: %s: %s", e.Path, e.Message)
		}
	}
	if cfg == nil {
		cfg = &cloudinit.Config{}
	}
	b.early = cfg
	return nil
}

func (b *pid1Boot) loadModules(ctx context.Context) error {
	md, err := b.moduleDeps()
	if err != nil {
		return errors.Join(err, b.autoload(true))
	}
	// The defaults come from the initramfs; then the system image's
	// modules take the place of its copies, for the config's and the
	// devices' modules and all that loads later.
	n, err := bootstrap.LoadModules(b.log, md, bootstrap.DefaultModules())
	md, serr := b.systemModules(md)
	// What else the kernel needs (a crypto driver, later a netfilter
	// table, a filesystem, a link type) it loads through ros as modprobe,
	// by modules.alias, from the system image's modules.
	err = errors.Join(err, serr, b.autoload(true))
	if len(b.early.Rancher.Modules) > 0 {
		k, merr := bootstrap.LoadModules(b.log, md, b.early.Rancher.Modules)
		n += k
		err = errors.Join(err, merr)
	}
	b.log.Printf("loaded %d kernel modules", n)
	// The drivers of the hardware that is there (an NVMe disk, an ENA
	// NIC on EC2), by modalias, before the state disk is looked for.
	start := time.Now()
	c, cerr := bootstrap.Coldplug(b.log, md, "/sys")
	b.log.Printf("coldplug: loaded %d modules for the devices present (%s)", c, time.Since(start).Round(time.Millisecond))
	err = errors.Join(err, cerr)
	// Nothing needs these until the network config or User Docker asks,
	// seconds later (and the kernel's autoloader loads one asked for
	// sooner).
	go func() {
		start := time.Now()
		n, _ := bootstrap.LoadModules(b.log, md, append(bootstrap.LaterModules(), bootstrap.EngineModules()...))
		b.log.Printf("loaded %d link, input and netfilter modules in the background (%s)", n, time.Since(start).Round(time.Millisecond))
	}()
	return err
}

// configModules loads the config's rancher.modules (from user-data, the
// state disk, any source; RancherOS's test_27 asks for btrfs in
// user-data) once the config is read, before its mounts, which may need
// one. The kernel command line's were loaded with the defaults already.
func (b *pid1Boot) configModules(ctx context.Context) error {
	var names []string
	for _, m := range b.cfg.Rancher.Modules {
		if !slices.Contains(b.early.Rancher.Modules, m) {
			names = append(names, m)
		}
	}
	if len(names) == 0 {
		return nil
	}
	md, err := b.moduleDeps()
	if err != nil {
		return fmt.Errorf("rancher.modules: %w", err)
	}
	n, err := bootstrap.LoadModules(b.log, md, names)
	b.log.Printf("rancher.modules: loaded %d kernel modules for %s", n, strings.Join(names, ", "))
	if err != nil {
		return fmt.Errorf("rancher.modules: %w", err)
	}
	return nil
}

// autoload turns the kernel's module autoloader on (/sbin/modprobe, which
// is ros) or off, through /proc/sys/kernel/modprobe. It is off from the
// system image phase until the system image's modules are bound, while
// only the initramfs's modules load (the media drivers, the defaults): a
// module's init that asks for another then (t10_pi's crc64_rocksoft for
// crc64-rocksoft, crc_t10dif for crct10dif) can only be answered from the
// initramfs, which lacks those, and each ask ran ros twice, about 0.4 s
// under TCG.
func (b *pid1Boot) autoload(on bool) error {
	path := "\n"
	if on {
		path = "/sbin/modprobe\n"
	}
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte(path), 0o644); err != nil {
		return fmt.Errorf("set the kernel's modprobe: %w", err)
	}
	return nil
}

// entropy blocks once until the kernel's random pool is ready, so nothing
// later (the DHCP client's transaction IDs, TLS) spins on it.
func (b *pid1Boot) entropy(ctx context.Context) error {
	buf := make([]byte, 1)
	_, err := unix.Getrandom(buf, 0)
	if err != nil {
		return fmt.Errorf("getrandom: %w", err)
	}
	return nil
}

func (b *pid1Boot) systemImage(ctx context.Context) error {
	// Off until loadModules has bound the system image's modules: until
	// then only the initramfs's are there (see autoload).
	if err := b.autoload(false); err != nil {
		b.log.Printf("%v", err)
	}
	dev := os.Getenv(pid1SystemLoopEnv)
	if dev == "" {
		img := bootstrap.SystemImage
		if _, err := os.Stat(img); err != nil {
			if img, err = b.mediaSystemImage(); err != nil {
				return err
			}
		}
		var err error
		if dev, err = bootstrap.AttachLoop(img, true); err != nil {
			return err
		}
	}
	if err := bootstrap.MountSystemImage(dev, "/usr"); err != nil {
		return err
	}
	paths := prefetchPaths()
	size := bootstrap.PrefetchSize(paths...)
	if avail, err := bootstrap.MemAvailable(); err != nil || avail < prefetchHeadroom*size {
		b.log.Printf("not prefetching the engines (%d MiB): %d MiB of memory available, %v", size>>20, avail>>20, err)
		return nil
	}
	go func() {
		start := time.Now()
		end := b.tl.Begin("prefetch engines")
		files, n := bootstrap.Prefetch(paths...)
		end(nil)
		b.log.Printf("prefetched %d engine files, %d MiB, in the background (%s)", files, n>>20, time.Since(start).Round(time.Millisecond))
	}()
	return nil
}

// systemModules puts the system image's kernel modules at /lib/modules
// in place of the initramfs's few (bootstrap.UseSystemModules) and
// returns the index read again. On a failure the modules already loaded
// stay; it returns md, the error and what still loads.
func (b *pid1Boot) systemModules(md *bootstrap.ModuleDeps) (*bootstrap.ModuleDeps, error) {
	dir, err := bootstrap.KernelModuleDir()
	if err != nil {
		return md, err
	}
	freed, err := bootstrap.UseSystemModules(filepath.Join("/usr", dir), dir)
	if err != nil {
		return md, err
	}
	if freed == 0 {
		return md, nil // an image without its own modules: nothing changed
	}
	b.log.Printf("kernel modules: %s from the system image (%d KiB of RAM given back)", dir, freed>>10)
	b.md = nil
	full, err := b.moduleDeps()
	if err != nil {
		return md, err
	}
	return full, nil
}

// prefetchHeadroom is how many times what prefetching reads must be
// available for it to help. With less (a 512 MiB guest booted from an
// initrd, whose system image sits in RAM), the prefetched pages are
// evicted before the engines use them and read twice: a 512 MiB EC2 boot
// reached User Docker at 49.4 s with the prefetch, 38.6 s without.
const prefetchHeadroom = 4

// mediaSystemImage finds the system image when the initramfs is the
// small one: on the state filesystem of an installed disk (when the
// kernel command line has bootstrap.StateImageArg), else on the boot
// medium of a boot from berth.iso (its CD-ROM, or the USB stick it was
// written to). It loads the drivers of the CD-ROM and disk controllers
// and their filesystems first.
func (b *pid1Boot) mediaSystemImage() (string, error) {
	md, err := b.moduleDeps()
	if err != nil {
		return "", err
	}
	if _, err := bootstrap.LoadModules(b.log, md, bootstrap.MediaModules()); err != nil {
		b.log.Printf("boot media drivers: %v", err)
	}
	if _, err := bootstrap.Coldplug(b.log, md, "/sys"); err != nil {
		b.log.Printf("coldplug: %v", err)
	}
	s := bootstrap.ImageSearch{MediaDir: "/run/berth/media", Wait: mediaWait}
	if bootstrap.ImageOnState(b.cmdline) {
		st := b.early.Rancher.State
		s.State = bootstrap.StateOptions{Dev: st.Dev, FSType: st.FSType}
		s.StateDir = bootstrap.StateMount
	}
	return bootstrap.FindSystemImage(b.log, s)
}

// mediaWait bounds the search for the boot medium's system image.
const mediaWait = 20 * time.Second

// prefetchPaths are what the engines exec and read first, in the order
// they need them: the engines' binaries, then the OS images' layer (the
// image store's files, which the services' containers run). Read early,
// in the background, their squashfs blocks are decompressed while the
// boot waits on modules, DHCP and the datasources: under TCG a cold
// dockerd takes 1.2 s longer to start than a cached one.
func prefetchPaths() []string {
	return []string{"/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/sbin/runc",
		"/usr/bin/containerd-shim-runc-v2", "/usr/bin/docker-init", DefaultImageDir}
}

func (b *pid1Boot) etc(ctx context.Context) error {
	var errs []error
	for _, f := range []struct {
		path, data string
	}{
		{"/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
		{"/etc/resolv.conf", ""},
		{"/etc/hostname", "berth\n"},
	} {
		if _, err := os.Stat(f.path); err == nil {
			continue
		}
		if err := os.WriteFile(f.path, []byte(f.data), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Lstat("/etc/mtab"); err != nil {
		errs = append(errs, os.Symlink("/proc/self/mounts", "/etc/mtab"))
	}
	for _, d := range []string{"/var/log", "/var/lib/rancher/conf", "/home/rancher/.ssh", "/root", "/run/berth"} {
		errs = append(errs, os.MkdirAll(d, 0o755))
	}
	errs = append(errs, os.Chown("/home/rancher", 1100, 1100), os.Chown("/home/rancher/.ssh", 1100, 1100))
	return errors.Join(errs...)
}

func (b *pid1Boot) stateDisk(ctx context.Context) error {
	st := b.early.Rancher.State
	o := bootstrap.StateOptions{Dev: st.Dev, FSType: st.FSType, Autoformat: st.Autoformat}
	if st.Wait {
		o.Wait = 10 * time.Second
	}
	dev, err := bootstrap.SetupState(ctx, b.log, o)
	switch {
	case err != nil && st.Required:
		return err
	case err != nil:
		b.log.Printf("state disk: %v; running from RAM", err)
	case dev == "":
		b.log.Printf("no state disk (%s): running from RAM, nothing is kept across boots", pid1Or(st.Dev, "LABEL="+bootstrap.StateLabel))
	default:
		b.stateDev = dev
		b.log.Printf("state disk %s mounted on %s", dev, bootstrap.StateMount)
	}
	// /home/rancher may have come from the state disk.
	_ = os.MkdirAll("/home/rancher/.ssh", 0o700)
	_ = os.Chown("/home/rancher", 1100, 1100)
	_ = os.Chown("/home/rancher/.ssh", 1100, 1100)
	return nil
}

// resizeState grows the state partition and its filesystem to the end
// of rancher.resize_device (RancherOS's key: a cloud image on a bigger
// disk), in the background: an online resize2fs of a large disk takes a
// while, and nothing waits on it.
func (b *pid1Boot) resizeState(ctx context.Context) error {
	disk := b.cfg.Rancher.ResizeDevice
	if disk == "" {
		return nil
	}
	if b.stateDev == "" {
		return fmt.Errorf("rancher.resize_device %s: no state disk to grow", disk)
	}
	go func() {
		end := b.tl.Begin("resize state")
		gained, err := bootstrap.GrowState(b.life, b.log, disk, b.stateDev)
		end(err)
		if err != nil {
			b.log.Printf("rancher.resize_device %s: %v", disk, err)
			return
		}
		b.log.Printf("rancher.resize_device %s: state filesystem on %s fills it (%d MiB added)", disk, b.stateDev, gained>>20)
	}()
	return nil
}

func (b *pid1Boot) loadConfig(ctx context.Context) error {
	cfg, err := b.readConfig()
	if err != nil {
		b.cfg = b.early
		return fmt.Errorf("load config (using the kernel command line alone): %w", err)
	}
	b.cfg = cfg
	return nil
}

// zram gives a machine with little RAM a swap device of compressed RAM
// (rancher.zram.size; "auto" is half the RAM below 768 MiB), before the
// engines start and fill it.
func (b *pid1Boot) zram(ctx context.Context) error {
	total, err := bootstrap.MemTotal()
	if err != nil {
		return err
	}
	z := b.cfg.Rancher.Zram
	size, err := z.Bytes(total)
	if err != nil || size == 0 {
		return err
	}
	md, err := b.moduleDeps()
	if err != nil {
		return err
	}
	if _, err := bootstrap.LoadModules(b.log, md, []string{"zram"}); err != nil {
		return err
	}
	dev, err := bootstrap.ZramSwap("/sys", size)
	if err != nil {
		return err
	}
	// Paging a cold page out to zram and back costs less than dropping
	// an engine binary's page and decompressing its squashfs block again:
	// lean on the swap (rancher.sysctl, applied later, may say otherwise).
	if err := os.WriteFile("/proc/sys/vm/swappiness", []byte(zramSwappiness), 0o644); err != nil {
		b.log.Printf("zram: vm.swappiness: %v", err)
	}
	b.log.Printf("swap on %s: up to %d MiB of compressed RAM, for %d MiB of memory (rancher.zram.size: %s)",
		dev, size>>20, total>>20, pid1Or(z.Size, "auto"))
	return nil
}

// mounts applies the config's mounts before the services start, so that
// the console and User Docker (which bind /mnt, /media, /home and /opt)
// see them: a filesystem is mounted (its type found when none is given),
// a swap area is swapped to, a file or directory is bound (`bind`). A
// bind whose source is not there yet waits for write_files (RancherOS's
// test_23 binds a file that write_files makes), which come after the
// mounts so that a file for a mounted filesystem lands on it. An entry
// that fails is logged with its index and the others still apply;
// nothing here stops the boot.
func (b *pid1Boot) mounts(ctx context.Context) error {
	b.laterBinds = nil
	var errs []error
	var try []string
	for i, m := range b.cfg.Mounts {
		if flags, _ := bootstrap.MountOptions(m.Options); flags&unix.MS_BIND != 0 {
			if _, err := os.Stat(m.Device); errors.Is(err, fs.ErrNotExist) {
				b.laterBinds = append(b.laterBinds, i)
				b.log.Printf("mounts[%d]: %s is not there yet; bound after write_files", i, m.Device)
				continue
			}
		} else if (m.FSType == "" || m.FSType == "auto") && try == nil {
			try, _ = bootstrap.Filesystems()
		}
		errs = append(errs, b.mount(i, m, try))
	}
	return errors.Join(errs...)
}

// mount applies the config's mounts[i]; try are the filesystem types to
// try when it names none (a bind needs none).
func (b *pid1Boot) mount(i int, m cloudinit.Mount, try []string) error {
	dev := bootstrap.FindDevice(m.Device)
	if dev == "" {
		return fmt.Errorf("mounts[%d]: no device %s", i, m.Device)
	}
	if m.FSType == "swap" {
		if err := b.swapon(dev); err != nil {
			return fmt.Errorf("mounts[%d]: %w", i, err)
		}
		b.log.Printf("mounts[%d]: swap on %s", i, dev)
		return nil
	}
	typ, err := bootstrap.MountDevice(dev, m.MountPoint, m.FSType, m.Options, try)
	if err != nil {
		return fmt.Errorf("mounts[%d]: %w", i, err)
	}
	b.log.Printf("mounts[%d]: %s on %s (%s)", i, dev, m.MountPoint, typ)
	return nil
}

// swapon swaps to dev when it holds a swap area; Berth does not make one
// on a device a config names (that would erase it).
func (b *pid1Boot) swapon(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("swap %s: %w", dev, err)
	}
	ok := bootstrap.IsSwap(f)
	f.Close()
	if !ok {
		return fmt.Errorf("swap %s: not a swap area (make one with mkswap %s)", dev, dev)
	}
	return bootstrap.Swapon(dev, -1)
}

// writeFiles writes the config's write_files before the network comes
// up, so that the network's hooks (pre_cmds, pre_up, post_up, post_cmds)
// and bootcmd find the scripts they name. cloud-init-execute writes them
// again after the network, so that a write_files /etc/hosts or
// /etc/resolv.conf wins over the one netconf wrote, as in RancherOS,
// where write_files came after the network. A failed entry is logged
// and the others are still written. An entry for the network service's
// container is written on the host as well, where the hooks run. Then
// the config's binds of a source that was not there yet are made
// (mounts).
//
// An entry that writes a config source (a cloud-config.d/*.yml, the
// local cloud-config.yml: cloudinit.IsConfigSource) changes this boot's
// config, so PID 1 loads it again: the network, the services and User
// Docker then use the config cloud-init-execute also reads, instead of
// one without the file. A config that no longer loads leaves the one
// PID 1 had.
func (b *pid1Boot) writeFiles(ctx context.Context) error {
	// RancherOS ran rancher.network's hooks in its network container,
	// so its configs put the hook scripts there (container: network);
	// here PID 1 runs them on the host, which gets those files too.
	host := *b.cfg
	host.WriteFiles = slices.Clone(b.cfg.WriteFiles)
	for _, f := range b.cfg.WriteFiles {
		if f.Container == NetworkService {
			f.Container = ""
			host.WriteFiles = append(host.WriteFiles, f)
		}
	}
	err := cloudinit.WriteFiles(&host, "/", cloudinit.WithLogger(b.slog.With("step", "write_files")))
	for _, i := range b.laterBinds {
		err = errors.Join(err, b.mount(i, b.cfg.Mounts[i], nil))
	}
	var sources []string
	for _, f := range b.cfg.WriteFiles {
		if f.Container == "" && cloudinit.IsConfigSource(f.Path) {
			sources = append(sources, f.Path)
		}
	}
	if len(sources) == 0 {
		return err
	}
	cfg, lerr := b.readConfig()
	if lerr != nil {
		b.log.Printf("write_files wrote %s: load config: %v; this boot keeps the config it had", strings.Join(sources, ", "), lerr)
		return errors.Join(err, lerr)
	}
	b.cfg = cfg
	b.log.Printf("write_files wrote %s: this boot's config includes them", strings.Join(sources, ", "))
	return err
}

// bootcmd runs the config's bootcmd on the host, once the network is up
// and before the services start, within bootcmdLimit; a failing command
// is logged and the boot goes on.
func (b *pid1Boot) bootcmd(ctx context.Context) error {
	if len(b.cfg.Bootcmd) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, bootcmdLimit)
	defer cancel()
	return cloudinit.RunCommands(ctx, b.cfg.Bootcmd, cloudinit.WithLogger(b.slog.With("step", "bootcmd")))
}

// cloudInitExecute starts `ros cloud-init-execute` on the host's / in
// the background, with this boot's config saved: write_files (again,
// after writeFiles), ssh keys, hostname, sysctl, runcmd and the user-data
// script. RancherOS ran it as
// System Docker's first container, on the way to User Docker; under TCG
// that container cost 4 s after System Docker answered. Here it runs
// while System Docker starts, and what comes after it (the console, User
// Docker) waits for it (waitCloudInitExecute). Its output goes to
// /var/log/cloud-init-execute.log.
func (b *pid1Boot) cloudInitExecute(ctx context.Context) error {
	finish := func(err error) error {
		b.cieErr = err
		close(b.cieDone)
		return err
	}
	f, err := os.OpenFile(CloudInitExecuteLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return finish(fmt.Errorf("cloud-init-execute: %w", err))
	}
	cmd := exec.CommandContext(b.life, "/bin/ros", "cloud-init-execute")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	if err := cmd.Start(); err != nil {
		f.Close()
		return finish(fmt.Errorf("cloud-init-execute: %w", err))
	}
	end := b.tl.Begin(CloudInitExecute)
	t0 := time.Now()
	go func() {
		err := cmd.Wait()
		f.Close()
		end(err)
		if err != nil {
			err = fmt.Errorf("cloud-init-execute: %w (its output is in %s)", err, CloudInitExecuteLog)
			b.log.Printf("%v", err)
		} else {
			b.log.Printf("cloud-init-execute done (%s); its output is in %s", time.Since(t0).Round(time.Millisecond), CloudInitExecuteLog)
		}
		_ = finish(err)
	}()
	return nil
}

// CloudInitExecuteLog is where PID 1's cloud-init-execute writes.
const CloudInitExecuteLog = "/var/log/cloud-init-execute.log"

// waitCloudInitExecute is the services' wait for cloud-init-execute. One
// that is still running after cloudInitExecuteWait (a runcmd that hangs)
// goes on running, and the console starts, so the machine can be fixed.
func (b *pid1Boot) waitCloudInitExecute(ctx context.Context) error {
	select {
	case <-b.cieDone:
		return b.cieErr
	case <-time.After(cloudInitExecuteWait):
		return fmt.Errorf("cloud-init-execute still runs after %s (its output is in %s)", cloudInitExecuteWait, CloudInitExecuteLog)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cloudInitExecuteWait bounds how long the console and User Docker wait
// for cloud-init-execute.
const cloudInitExecuteWait = 2 * time.Minute

// bootcmdLimit bounds bootcmd: a command that hangs is killed, and the
// console and SSH still come up to fix it.
const bootcmdLimit = 2 * time.Minute

// zramSwappiness is vm.swappiness with a zram swap (the kernel's default
// is 60; above 100 means swapping is cheaper than reading files again).
// A 256 MiB boot from the ISO reached User Docker at 80.8 s with 150,
// 88.3 s with 60.
const zramSwappiness = "150"

// readConfig loads the config snapshot from / and logs its report, each
// entry with its file, line and column.
func (b *pid1Boot) readConfig() (*cloudinit.Config, error) {
	cfg, rep, err := cloudinit.Load("/")
	if rep != nil {
		for _, e := range rep.Entries {
			kind := "warning"
			if e.Error {
				kind = "error"
			}
			b.log.Printf("config %s: %s:%d:%d %s: %s", kind, e.Source, e.Line, e.Column, e.Path, e.Message)
		}
	}
	if err == nil && cfg == nil {
		err = errors.New("no config")
	}
	return cfg, err
}

// pid1Lines logs what is written to it, one console line per line: slog's
// records, the installer's output.
type pid1Lines struct {
	log *bootstrap.Logger
	mu  sync.Mutex
	buf []byte
}

func (w *pid1Lines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.log.Printf("%s", w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (b *pid1Boot) datasourceList() []string {
	if b.cfg != nil && len(b.cfg.Rancher.CloudInit.Datasources) > 0 {
		return b.cfg.Rancher.CloudInit.Datasources
	}
	return b.early.Rancher.CloudInit.Datasources
}

// networkEarly brings links up and, when a network datasource is listed,
// takes temporary DHCP leases for it.
func (b *pid1Boot) networkEarly(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := netconf.Early(ctx, datasources.NeedsNetwork(b.datasourceList()), netconf.WithLogger(b.slog))
	b.earlyNet = st
	return err
}

// datasources asks the configured sources for user-data and metadata and
// saves the answer where cloudinit.Load reads it.
func (b *pid1Boot) datasources(ctx context.Context) error {
	list := b.datasourceList()
	if len(list) == 0 {
		b.log.Printf("no datasources configured (rancher.cloud_init.datasources)")
		return nil
	}
	cfg := b.early
	if b.cfg != nil {
		cfg = b.cfg
	}
	opts := datasources.ConfigOptions(cfg.Rancher.CloudInit)
	proxy, err := cfg.Rancher.Network.Proxy()
	if err != nil {
		b.log.Printf("datasources: %v; fetching URLs direct", err)
	} else if proxy != nil {
		b.log.Printf("datasources: URLs fetched through %s", cfg.Rancher.Network.ProxySummary())
	}
	d, err := datasources.Run(ctx, list, append(opts, datasources.WithProxy(proxy))...)
	if err != nil {
		return fmt.Errorf("datasources: %w", err)
	}
	for _, r := range d.Sources {
		b.log.Printf("datasource %s", pid1Record(r))
	}
	if d.Chosen != "" {
		b.log.Printf("datasource %s answered (%s)", d.Chosen, time.Duration(d.Took).Round(time.Millisecond))
	} else {
		b.log.Printf("no datasource answered; keeping what an earlier boot saved")
	}
	return datasources.Save("/", d)
}

func pid1Record(r any) string {
	data, _ := json.Marshal(r)
	return string(data)
}

// network applies the final rancher.network, keeping the early leases, and
// keeps the leases renewed for the machine's lifetime.
func (b *pid1Boot) network(ctx context.Context) error {
	name := b.cfg.Hostname
	if name == "" {
		name = pid1Or(b.cfg.Rancher.Defaults.Hostname, "berth")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := netconf.Apply(ctx, b.cfg.Rancher.Network, netconf.WithHostname(name), netconf.WithPrevious(b.earlyNet), netconf.WithLogger(b.slog))
	if st != nil {
		go func() { _ = st.Run(b.life) }()
	}
	if err != nil {
		if herr := unix.Sethostname([]byte(name)); herr != nil {
			b.log.Printf("sethostname %s: %v", name, herr)
		}
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// startSystemDocker starts System Docker from the local config (the
// command line and the state disk's) in the background, so that its
// start overlaps the network and the datasources; engines, a later
// phase, waits for it.
func (b *pid1Boot) startSystemDocker(ctx context.Context) error {
	cfg := b.cfg
	b.systemDone = make(chan struct{})
	go func() {
		defer close(b.systemDone)
		end := b.tl.Begin("system docker")
		b.system, b.systemErr = StartSystem(ctx, cfg, WithVersion(b.version), WithLogger(b.slog), WithShimGroup("/bin/ros"),
			WithBootStep(CloudInitExecute, b.waitCloudInitExecute))
		end(b.systemErr)
		if b.systemErr == nil {
			b.addStop("engines", b.system.Shutdown)
		}
	}()
	return nil
}

// engines starts the services (User Docker among them) on System Docker,
// with the final config; shutdown stops them in reverse.
func (b *pid1Boot) engines(ctx context.Context) error {
	<-b.systemDone
	e, err := b.system, b.systemErr
	if err != nil {
		return err
	}
	// The services after docker wait for User Docker to answer, so the
	// boot is complete only after it: mark it as it happens.
	go b.waitUserDocker(b.life)
	b.userDockerTLS(b.cfg)
	if err := e.StartServices(ctx, b.cfg); err != nil {
		return err
	}
	b.mu.Lock()
	b.running = e
	b.mu.Unlock()
	if e.StartErr != nil {
		b.log.Printf("services: %v", e.StartErr)
	}
	return nil
}

// reload is SIGHUP (`ros service up` sends it): the config is read again
// and the system services reconciled against it, so that a service
// enabled, changed or added since the boot is created and supervised, and
// one disabled is removed.
func (b *pid1Boot) reload(ctx context.Context) {
	b.mu.Lock()
	e := b.running
	b.mu.Unlock()
	if e == nil {
		b.log.Printf("reload: the services are not started yet; nothing to reload")
		return
	}
	cfg, err := b.readConfig()
	if err != nil {
		b.log.Printf("reload: load config: %v; keeping the services as they are", err)
		return
	}
	if next, ok := b.fetchServicesFiles(ctx, cfg); ok {
		cfg = next
	}
	b.userDockerTLS(cfg)
	res, err := e.Reload(ctx, cfg)
	b.log.Printf("reload: created %v, recreated %v, removed %v, unchanged %v", res.Created, res.Recreated, res.Removed, res.Unchanged)
	if err != nil {
		b.log.Printf("reload: %v", err)
	}
}

// userDockerTLS prepares User Docker's certificates in /etc/docker/tls
// when rancher.docker.tls is on (PrepareServerTLS). A config whose
// certificates cannot be used is reported; User Docker then starts with
// the machine's own rather than failing to start at all.
func (b *pid1Boot) userDockerTLS(cfg *cloudinit.Config) {
	if !cfg.Rancher.Docker.TLS {
		return
	}
	hosts := tlsHosts()
	how, err := PrepareServerTLS(TLSDir, TLSStore, cfg.Rancher.Docker, hosts, time.Now())
	if err != nil {
		b.log.Printf("rancher.docker.tls: %v", err)
	}
	switch how {
	case "config":
		b.log.Printf("rancher.docker.tls: User Docker's certificates are rancher.docker's ca_cert, server_cert and server_key")
	case "kept":
		b.log.Printf("rancher.docker.tls: User Docker's certificates are the ones already in %s", TLSDir)
	case "store":
		b.log.Printf("rancher.docker.tls: User Docker's CA and server certificate are the ones kept in %s", TLSStore)
	case "made":
		b.log.Printf("rancher.docker.tls: made User Docker a server certificate for localhost, %s, signed by the CA kept in %s; `ros tls gen` makes a client certificate", strings.Join(hosts, ", "), TLSStore)
	}
}

// tlsHosts are the names a server certificate made at boot is valid
// for, besides localhost: the hostname and the machine's addresses.
func tlsHosts() []string {
	var hosts []string
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
			hosts = append(hosts, n.IP.String())
		}
	}
	return hosts
}

func pid1Or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// autologin starts a root shell on each console named by
// rancher.autologin=ttyS0 (RancherOS's key), again whenever it exits.
func (b *pid1Boot) autologin() {
	v, ok := cloudinit.CmdlineValue(b.cmdline, "rancher.autologin")
	if !ok || v == "" {
		return
	}
	for _, tty := range strings.Split(v, ",") {
		go func(dev string) {
			for {
				cmd := exec.Command("/bin/sh", "-l")
				cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=vt100", "PS1=berth# "}
				f, err := os.OpenFile(dev, os.O_RDWR, 0)
				if err != nil {
					b.log.Printf("autologin %s: %v", dev, err)
					return
				}
				cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
				cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
				if err := cmd.Run(); err != nil && !b.stopping.Load() {
					b.log.Printf("autologin %s: %v", dev, err)
				}
				f.Close()
				time.Sleep(time.Second)
				if b.stopping.Load() {
					return
				}
			}
		}("/dev/" + strings.TrimPrefix(tty, "/dev/"))
	}
}

// PID1UserDockerLine is printed when User Docker first answers.
const PID1UserDockerLine = "User Docker ready"

// waitUserDocker marks the timeline when User Docker first answers /_ping
// (it starts in the background, as a service of System Docker).
func (b *pid1Boot) waitUserDocker(ctx context.Context) {
	hc := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", "/var/run/docker.sock")
		}},
	}
	for i := 0; i < 1200; i++ {
		resp, err := hc.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				b.tl.Mark("user docker ready")
				if err := b.tl.Save(bootstrap.TimelinePath); err != nil {
					b.log.Printf("%v", err)
				}
				// What the CPUs did until now says whether the boot
				// waited (idle time) or computed (busy time).
				cpu := "cpu times unknown"
				if c, err := bootstrap.ReadCPUTimes(); err == nil {
					cpu = "CPUs " + c.String()
				}
				b.log.Printf("%s (%.3f s since the kernel started; %s)", PID1UserDockerLine, bootstrap.Uptime().Seconds(), cpu)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// pid1WaitShell shows err and runs emergency shells on the console, one
// after the other, until a power signal ends the machine.
func pid1WaitShell(log *bootstrap.Logger, err error) {
	for {
		p := pid1EmergencyShell(log, err)
		if p == nil {
			return
		}
		_, _ = p.Wait()
	}
}

// addStop registers what shutdown stops; they run last-added first.
func (b *pid1Boot) addStop(name string, fn func(ctx context.Context) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stops = append(b.stops, pid1Stop{name, fn})
}

// shutdown stops what the boot started, in reverse order, within
// rancher.shutdown_timeout, then ends the machine.
func (b *pid1Boot) shutdown(a PID1Action) {
	timeout := 60 * time.Second
	if b.cfg != nil && b.cfg.Rancher.ShutdownTimeout > 0 {
		timeout = time.Duration(b.cfg.Rancher.ShutdownTimeout) * time.Second
	}
	b.stopping.Store(true)
	b.log.Printf("%s: stopping (limit %s)", a, timeout)
	// A fresh context: the boot's is cancelled already.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	b.mu.Lock()
	stops := append([]pid1Stop(nil), b.stops...)
	b.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		start := time.Now()
		if err := stops[i].fn(ctx); err != nil {
			b.log.Printf("%s: stop %s: %v", a, stops[i].name, err)
		} else {
			b.log.Printf("%s: stopped %s (%s)", a, stops[i].name, time.Since(start).Round(time.Millisecond))
		}
	}
	cancel()
	pid1FinalShutdown(b.log, a, 5*time.Second)
}

// watchPowerButton turns the ACPI power button (an input device named
// "Power Button", KEY_POWER) into a poweroff.
func (b *pid1Boot) watchPowerButton(power chan<- PID1Action) {
	// The button and evdev modules load in the boot; give them a moment.
	for i := 0; i < 100; i++ {
		ents, _ := filepath.Glob("/sys/class/input/event*/device/name")
		for _, n := range ents {
			name, _ := os.ReadFile(n)
			if strings.TrimSpace(string(name)) != "Power Button" {
				continue
			}
			dev := "/dev/input/" + filepath.Base(filepath.Dir(filepath.Dir(n)))
			f, err := os.Open(dev)
			if err != nil {
				continue
			}
			go func() {
				defer f.Close()
				// struct input_event on 64-bit: timeval (16), type u16,
				// code u16, value s32.
				ev := make([]byte, 24)
				for {
					if _, err := f.Read(ev); err != nil {
						return
					}
					typ := binary.LittleEndian.Uint16(ev[16:])
					code := binary.LittleEndian.Uint16(ev[18:])
					val := int32(binary.LittleEndian.Uint32(ev[20:]))
					const evKey, keyPower = 1, 116
					if typ == evKey && code == keyPower && val == 1 {
						b.log.Printf("power button pressed")
						power <- PID1Poweroff
						return
					}
				}
			}()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
