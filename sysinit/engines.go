package sysinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/moby/moby/client"
)

// Paths on the machine (joined onto the root option).
const (
	// DefaultImageDir holds the OS's images in the system image: the image
	// store (package imagestore) in its "store" directory.
	DefaultImageDir  = "/usr/share/berth/images"
	systemPreloadDir = "/var/lib/rancher/preload/system-docker"
	userPreloadDir   = "/var/lib/rancher/preload/docker"
	defaultSystemLog = "/var/log/system-docker.log"
	serviceStateFile = "/run/berth/services.json"
	userStateFile    = "/run/berth/user-services.json"
	userDockerRunDir = "/var/run/user-docker"
	imageStampName   = "berth-images.version"
)

type engineOptions struct {
	root      string
	dockerd   string
	imageDir  string
	version   string
	log       *slog.Logger
	extraArgs []string
	pingLimit time.Duration
	backoff   [3]time.Duration
	userWait  time.Duration
	// shimRos is ros, standing in for System Docker's shim (WithShimGroup).
	shimRos string
	// steps are what services may come after that PID 1 runs itself
	// (WithBootStep).
	steps map[string]func(context.Context) error
}

// Option configures StartEngines.
type Option func(*engineOptions)

// WithRoot puts every state path (image stamp, preload dirs, logs, the
// service state file, the User Docker socket link) under dir; default "/".
// The engines' own paths come from the config.
func WithRoot(dir string) Option { return func(o *engineOptions) { o.root = dir } }

// CloudInitExecute is the step that applies users' config (write_files,
// ssh keys, runcmd): RancherOS ran it as a one-shot service, Berth's PID
// 1 runs it while System Docker starts, and the services that come after
// it (the console, User Docker) wait for it by this name.
const CloudInitExecute = "cloud-init-execute"

// WithBootStep makes name, a step outside System Docker, something its
// services can come after (io.rancher.os.after): they wait for done to
// return.
func WithBootStep(name string, done func(ctx context.Context) error) Option {
	return func(o *engineOptions) {
		if o.steps == nil {
			o.steps = map[string]func(context.Context) error{}
		}
		o.steps[name] = done
	}
}

// WithDockerd sets the dockerd binary (default "dockerd" on PATH).
func WithDockerd(path string) Option { return func(o *engineOptions) { o.dockerd = path } }

// WithImageDir sets where the OS's images are (default
// /usr/share/berth/images, not under the root option): an image store in
// its "store" directory, seeded into System Docker's data root, or else
// `docker save` tarballs, loaded.
func WithImageDir(dir string) Option { return func(o *engineOptions) { o.imageDir = dir } }

// WithVersion sets the Berth version: the images' tag and the stamp that
// makes them load once (default "dev").
func WithVersion(v string) Option { return func(o *engineOptions) { o.version = v } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *engineOptions) { o.log = l } }

// WithSystemDockerArgs appends flags to System Docker's command line.
func WithSystemDockerArgs(args ...string) Option {
	return func(o *engineOptions) { o.extraArgs = append(o.extraArgs, args...) }
}

// WithPingTimeout bounds how long an engine may take to answer /_ping
// (default 60 s).
func WithPingTimeout(d time.Duration) Option { return func(o *engineOptions) { o.pingLimit = d } }

// WithServiceBackoff sets the services' crash-loop backoff (default 1 s
// doubling to 30 s, reset after 60 s up).
func WithServiceBackoff(first, limit, reset time.Duration) Option {
	return func(o *engineOptions) { o.backoff = [3]time.Duration{first, limit, reset} }
}

// Engines is System Docker, the system services on it, and the
// user-scope services on User Docker, all kept running by this process.
type Engines struct {
	// System is the System Docker daemon.
	System *Daemon
	// Services are the system-scope services on System Docker.
	Services *Services
	// Started is what the boot's reconcile did.
	Started ReconcileResult
	// StartErr joins the services that failed to start at boot.
	StartErr error

	o      engineOptions
	cfg    *cloudinit.Config
	cancel context.CancelFunc
	runCtx context.Context
	wg     sync.WaitGroup
	// systemSetup is how System Docker was started.
	systemSetup daemonConfig

	mu   sync.Mutex
	user *Services
}

func (o *engineOptions) path(p string) string { return filepath.Join(o.root, p) }

// StartEngines starts System Docker as a child process (flags from
// rancher.system_docker) with the OS's images seeded into its data root
// (or loaded once per version), loads the preloaded tarballs, reconciles
// the services of cfg in dependency order and supervises them in
// goroutines. It returns once the services have
// been started; it fails only when System Docker cannot start. Service
// failures are logged, and are in Started and StartErr. User-scope
// services are reconciled on User Docker in the background once the
// `docker` service answers. It is StartSystem then StartServices.
func StartEngines(ctx context.Context, cfg *cloudinit.Config, opts ...Option) (*Engines, error) {
	e, err := StartSystem(ctx, cfg, opts...)
	if err != nil {
		return nil, err
	}
	if err := e.StartServices(ctx, cfg); err != nil {
		e.cancel()
		return nil, err
	}
	return e, nil
}

// StartSystem is the first half of StartEngines: System Docker for cfg,
// with the OS's images in place and the preloaded tarballs loaded. PID 1 runs it
// while the network and the datasources are still being waited for, then
// StartServices with the config they gave.
func StartSystem(ctx context.Context, cfg *cloudinit.Config, opts ...Option) (*Engines, error) {
	o := engineOptions{
		root: "/", dockerd: "dockerd", imageDir: DefaultImageDir, version: "dev",
		log: slog.Default(), pingLimit: 60 * time.Second,
		backoff:  [3]time.Duration{time.Second, 30 * time.Second, time.Minute},
		userWait: 2 * time.Minute,
	}
	for _, opt := range opts {
		opt(&o)
	}
	// Supervision outlives the boot's context: it ends with Shutdown.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &Engines{o: o, cfg: cfg, cancel: cancel, runCtx: runCtx}
	if err := e.startSystem(ctx, cfg); err != nil {
		cancel()
		return nil, err
	}
	return e, nil
}

// systemDaemon is how System Docker runs for cfg, and its settings.
func (e *Engines) systemDaemon(cfg *cloudinit.Config) (daemonConfig, cloudinit.Engine, error) {
	sysCfg := mergeEngine(cfg.Rancher.SystemDocker, SystemDockerDefaults())
	sock, err := socketPath(sysCfg)
	if err != nil {
		return daemonConfig{}, sysCfg, fmt.Errorf("start system docker: %w", err)
	}
	logPath := cfg.Rancher.Defaults.SystemDockerLogs
	if logPath == "" {
		logPath = defaultSystemLog
	}
	// rancher.network's proxies first: rancher.system_docker.environment
	// may set them otherwise (the last of a name wins).
	env := append(cfg.Rancher.Network.ProxyEnv(), sysCfg.Environment...)
	if e.o.shimRos != "" {
		shim, err := shimEnv(e.o.root, e.o.shimRos)
		if err != nil {
			e.o.log.Warn("system docker: each service gets a shim of its own", "err", err)
		}
		env = append(append([]string(nil), env...), shim...)
	}
	return daemonConfig{
		name: "system-docker", bin: e.o.dockerd,
		args:    append(DockerdArgs(sysCfg, SystemDockerDefaults()), e.o.extraArgs...),
		env:     env,
		logPath: e.o.path(logPath), socket: sock, execRoot: sysCfg.ExecRoot,
		log: e.o.log, pingLimit: e.o.pingLimit,
		onRestart: func(ctx context.Context) {
			// A new dockerd kills the old one's containers: bring the
			// services back.
			e.reconcileSystem(ctx)
		},
	}, sysCfg, nil
}

// sameDaemon reports whether two System Docker setups are one process's.
func sameDaemon(a, b daemonConfig) bool {
	return slices.Equal(a.args, b.args) && slices.Equal(a.env, b.env) &&
		a.logPath == b.logPath && a.socket == b.socket && a.execRoot == b.execRoot
}

func (e *Engines) startSystem(ctx context.Context, cfg *cloudinit.Config) error {
	t0 := time.Now()
	dc, sysCfg, err := e.systemDaemon(cfg)
	if err != nil {
		return err
	}
	store, seeded := e.seedOSImages(sysCfg)
	d, err := startDaemon(e.runCtx, dc)
	if err != nil {
		return err
	}
	e.System, e.systemSetup = d, dc
	o := e.o
	o.log.Info("system docker up", "after", time.Since(t0).Round(time.Millisecond))
	stamp := filepath.Join(sysCfg.DataRoot, imageStampName)
	var refs []string
	switch {
	case seeded:
	case store != nil:
		refs, err = LoadStore(ctx, d.Client, store, o.version, stamp)
	default:
		refs, err = LoadOSImages(ctx, d.Client, o.imageDir, o.version, stamp)
	}
	if err != nil {
		o.log.Error("load OS images", "dir", o.imageDir, "err", err)
	} else if refs != nil {
		o.log.Info("OS images loaded", "images", refs, "after", time.Since(t0).Round(time.Millisecond))
	}
	if refs, err := LoadPreload(ctx, d.Client, o.path(systemPreloadDir)); err != nil {
		o.log.Error("load preloaded images", "dir", systemPreloadDir, "err", err)
	} else if len(refs) > 0 {
		o.log.Info("preloaded images loaded", "engine", "system-docker", "images", refs)
	}
	return nil
}

// StartServices is the second half of StartEngines: the system services
// of cfg reconciled and supervised on System Docker, and the user-scope
// ones on User Docker once it answers. When cfg asks System Docker for
// other flags than StartSystem started it with (user-data that sets
// rancher.system_docker), System Docker is restarted with them first. It
// fails only when System Docker cannot start.
func (e *Engines) StartServices(ctx context.Context, cfg *cloudinit.Config) error {
	t0 := time.Now()
	o := e.o
	e.mu.Lock()
	e.cfg = cfg
	e.mu.Unlock()
	if dc, _, err := e.systemDaemon(cfg); err != nil {
		return err
	} else if !sameDaemon(dc, e.systemSetup) {
		o.log.Info("the config changed System Docker's flags; restarting it", "args", dc.args)
		if err := e.System.Stop(ctx, 10*time.Second); err != nil {
			o.log.Warn("stop system docker", "err", err)
		}
		if err := e.startSystem(ctx, cfg); err != nil {
			return err
		}
	}
	if err := e.linkUserSocket(); err != nil {
		o.log.Warn("user docker socket link", "err", err)
	}
	opts := []ServicesOption{WithServicesLogger(o.log), WithStateFile(o.path(serviceStateFile)),
		WithBackoff(o.backoff[0], o.backoff[1], o.backoff[2]),
		WithGate(UserDockerService, e.userReady)}
	for name, done := range o.steps {
		opts = append(opts, WithGate(name, done))
	}
	svc := NewServices("system-docker", e.System.Client, opts...)
	e.mu.Lock()
	e.Services = svc
	e.mu.Unlock()
	e.wg.Add(1)
	go func() { defer e.wg.Done(); svc.Supervise(e.runCtx) }()
	<-svc.Subscribed()
	for _, f := range UnplacedFiles(cfg) {
		o.log.Warn("write_files: no enabled service of that name; the file is written nowhere", "path", f.Path, "container", f.Container)
	}
	for _, n := range UnknownIncludes(cfg) {
		o.log.Warn("services_include: no service of that name is defined here or in rancher.repositories; nothing is included", "name", n, "repositories", len(cfg.Rancher.Repositories))
	}
	e.Started, e.StartErr = svc.Reconcile(ctx, e.systemSpecs())
	o.log.Info("system services started", "started", e.Started.Started, "failed", len(e.Started.Failed), "after", time.Since(t0).Round(time.Millisecond))

	if user := e.userSpecs(); len(user) > 0 || e.hasUserDocker() {
		e.wg.Add(1)
		go func() { defer e.wg.Done(); e.startUser(e.runCtx, user) }()
	}
	return nil
}

func (e *Engines) config() *cloudinit.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

func (e *Engines) systemSpecs() []Spec {
	var out []Spec
	for _, s := range ResolveImages(Specs(e.config()), e.o.version) {
		if s.Scope == ScopeSystem {
			out = append(out, s)
		}
	}
	return out
}

func (e *Engines) userSpecs() []Spec {
	var out []Spec
	for _, s := range ResolveImages(Specs(e.config()), e.o.version) {
		if s.Scope == ScopeUser {
			s.After = nil // system services are not on this engine
			out = append(out, s)
		}
	}
	return out
}

func (e *Engines) hasUserDocker() bool {
	for _, s := range e.systemSpecs() {
		if s.Name == UserDockerService {
			return true
		}
	}
	return false
}

func (e *Engines) reconcileSystem(ctx context.Context) {
	e.mu.Lock()
	svc := e.Services
	e.mu.Unlock()
	if svc == nil {
		return // not started yet: StartServices creates them
	}
	if _, err := svc.Resume(ctx, e.systemSpecs()); err != nil {
		e.o.log.Error("reconcile after engine restart", "err", err)
	}
}

// Reload reconciles the system services against a new config snapshot
// (after `ros config set`, `ros service enable`, ...): new services are
// created and supervised, changed ones recreated, removed ones removed.
// Services labelled io.rancher.os.reloadconfig are restarted even when
// unchanged (one-shots among them run again); other unchanged one-shots
// that already finished with 0 are not.
func (e *Engines) Reload(ctx context.Context, cfg *cloudinit.Config) (ReconcileResult, error) {
	e.mu.Lock()
	e.cfg = cfg
	e.mu.Unlock()
	specs := e.systemSpecs()
	// An unchanged one-shot that finished with 0 this boot (one `ros
	// service up` just ran, too) is done, unless it asks to run on each
	// reload (io.rancher.os.reloadconfig).
	res, err := e.Services.reconcile(ctx, specs, true, func(sp Spec) bool { return sp.ReloadConfig })
	var errs []error
	for _, sp := range specs {
		if !sp.ReloadConfig || sp.OneShot || sp.CreateOnly || !contains(res.Unchanged, sp.Name) {
			continue
		}
		if rerr := e.Services.Restart(ctx, sp.Name, 10*time.Second); rerr != nil {
			errs = append(errs, fmt.Errorf("reload: %w", rerr))
		}
	}
	return res, errors.Join(append([]error{err}, errs...)...)
}

// userSocket is User Docker's socket as seen from this process.
func (e *Engines) userSocket() string {
	return e.o.path(filepath.Join(userDockerRunDir, "docker.sock"))
}

// linkUserSocket makes /var/run/docker.sock point at the socket User
// Docker creates in its own /run (host /var/run/user-docker).
func (e *Engines) linkUserSocket() error {
	link := e.o.path("/var/run/docker.sock")
	if err := os.MkdirAll(e.o.path(userDockerRunDir), 0o755); err != nil {
		return err
	}
	if t, err := os.Readlink(link); err == nil && t == "user-docker/docker.sock" {
		return nil
	}
	_ = os.Remove(link)
	return os.Symlink("user-docker/docker.sock", link)
}

// waitUser polls User Docker's /_ping until it answers, for at most
// userWait.
func (e *Engines) waitUser(ctx context.Context, cli *client.Client) error {
	wctx, cancel := context.WithTimeout(ctx, e.o.userWait)
	defer cancel()
	if err := WaitPing(wctx, cli); err != nil {
		return fmt.Errorf("wait for user docker: %w", err)
	}
	return nil
}

// WaitPing polls an engine's /_ping every 100 ms until it answers, or
// returns the last error once ctx ends.
func WaitPing(ctx context.Context, cli *client.Client) error {
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Ping(pctx, client.PingOptions{})
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// userReady is the gate on the user engine's service: what comes after
// docker needs User Docker answering, and holding the OS's other
// services back until then gives User Docker's start the CPU.
func (e *Engines) userReady(ctx context.Context) error {
	cli, err := NewClient(e.userSocket())
	if err != nil {
		return err
	}
	defer cli.Close()
	return e.waitUser(ctx, cli)
}

// startUser waits for User Docker, loads its preloaded images and
// reconciles the user-scope services on it.
func (e *Engines) startUser(ctx context.Context, specs []Spec) {
	cli, err := NewClient(e.userSocket())
	if err != nil {
		e.o.log.Error("user docker", "err", err)
		return
	}
	if err := e.waitUser(ctx, cli); err != nil {
		e.o.log.Error("user docker did not answer", "socket", e.userSocket(), "err", err)
		return
	}
	e.o.log.Info("user docker up")
	if refs, err := LoadPreload(ctx, cli, e.o.path(userPreloadDir)); err != nil {
		e.o.log.Error("load preloaded images", "engine", "docker", "err", err)
	} else if len(refs) > 0 {
		e.o.log.Info("preloaded images loaded", "engine", "docker", "images", refs)
	}
	if len(specs) == 0 {
		return
	}
	var us *Services
	// When User Docker itself restarts (the docker service died and was
	// restarted), its containers died with it: bring the user-scope
	// services back once it answers again.
	resume := func(ctx context.Context) {
		e.o.log.Info("user docker back; resuming user services")
		if _, err := us.Resume(ctx, specs); err != nil {
			e.o.log.Error("user services", "err", err)
		}
	}
	us = NewServices("docker", cli, WithServicesLogger(e.o.log), WithStateFile(e.o.path(userStateFile)),
		WithBackoff(e.o.backoff[0], e.o.backoff[1], e.o.backoff[2]), WithReconnect(resume))
	e.mu.Lock()
	e.user = us
	e.mu.Unlock()
	go us.Supervise(ctx)
	<-us.Subscribed()
	if _, err := us.Reconcile(ctx, specs); err != nil {
		e.o.log.Error("user services", "err", err)
	}
}

// Status returns every service's status, system and user scope.
func (e *Engines) Status() []ServiceStatus {
	e.mu.Lock()
	svc, u := e.Services, e.user
	e.mu.Unlock()
	var out []ServiceStatus
	if svc != nil {
		out = svc.Status()
	}
	if u != nil {
		out = append(out, u.Status()...)
	}
	return out
}

// Shutdown stops User Docker (the docker service, so its dockerd stops
// the user's containers), then the other services, then System Docker,
// all within ctx's deadline (30 s when it has none).
func (e *Engines) Shutdown(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	e.cancel()
	var errs []error
	e.mu.Lock()
	u := e.user
	e.mu.Unlock()
	if u != nil {
		u.mu.Lock()
		u.stopping = true
		u.mu.Unlock()
	}
	grace := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		// Leave a third of what is left for System Docker itself.
		if g := time.Until(dl) / 3; g < grace {
			grace = g
		}
	}
	e.mu.Lock()
	svc := e.Services
	e.mu.Unlock()
	if svc != nil {
		if err := svc.StopAll(ctx, grace, UserDockerService); err != nil {
			errs = append(errs, err)
		}
	}
	rest := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		rest = time.Until(dl)
	}
	if err := e.System.Stop(ctx, rest); err != nil {
		errs = append(errs, err)
	}
	e.wg.Wait()
	return errors.Join(errs...)
}
