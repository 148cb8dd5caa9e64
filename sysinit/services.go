package sysinit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/internal/atomicfile"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// ServiceStatus is what PID 1 knows about one service; `ros service list`
// prints it.
type ServiceStatus struct {
	Name        string    `json:"name"`
	Engine      string    `json:"engine"`
	ContainerID string    `json:"container_id,omitempty"`
	Restarts    int       `json:"restarts"`
	LastExit    *int      `json:"last_exit,omitempty"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	Error       string    `json:"error,omitempty"`
	GaveUp      bool      `json:"gave_up,omitempty"`
}

type serviceState struct {
	// restarting is set while Berth itself restarts the container, so its
	// death is not a crash.
	restarting bool
	// lastDie is the time of the last die event handled; a resubscribed
	// stream replays older ones.
	lastDie   int64
	spec      Spec
	status    ServiceStatus
	backoff   *backoff
	startedAt time.Time
}

// Services reconciles and supervises the services of one engine.
type Services struct {
	engine    string
	cli       *client.Client
	log       *slog.Logger
	stateFile string
	first     time.Duration
	limit     time.Duration
	reset     time.Duration
	// onReconnect runs when Supervise subscribes again after the engine
	// stopped answering.
	onReconnect func(ctx context.Context)

	// gates are readiness checks: what comes after a gated service also
	// waits for its check (WithGate).
	gates map[string]func(context.Context) error

	mu         sync.Mutex
	states     map[string]*serviceState
	byID       map[string]string // container ID -> service name
	stopping   bool
	subscribed chan struct{}
}

// ServicesOption configures NewServices.
type ServicesOption func(*Services)

// WithBackoff sets the crash-loop backoff: the second restart waits first,
// doubling up to limit; a run of reset or longer starts over (defaults
// 1 s, 30 s, 60 s).
func WithBackoff(first, limit, reset time.Duration) ServicesOption {
	return func(s *Services) { s.first, s.limit, s.reset = first, limit, reset }
}

// WithStateFile makes the manager write its ServiceStatus list to path
// (atomically) on every change.
func WithStateFile(path string) ServicesOption {
	return func(s *Services) { s.stateFile = path }
}

// WithReconnect sets a function Supervise runs (in a goroutine) each time
// it has subscribed again after the engine stopped answering, e.g. to
// bring services back after the engine restarted.
func WithReconnect(fn func(ctx context.Context)) ServicesOption {
	return func(s *Services) { s.onReconnect = fn }
}

// WithGate makes what comes after name wait for ready to return: after
// the service's container has started (a dependency on the user engine
// is one on User Docker answering, not on its container running), or,
// when name is no service of this engine, in its place (a step PID 1
// runs itself, cloud-init-execute). An error from ready is logged and
// the dependents start anyway, so that a broken engine or a failed step
// does not keep the console from starting.
func WithGate(name string, ready func(ctx context.Context) error) ServicesOption {
	return func(s *Services) {
		if s.gates == nil {
			s.gates = map[string]func(context.Context) error{}
		}
		s.gates[name] = ready
	}
}

// WithServicesLogger sets the logger (default slog.Default()).
func WithServicesLogger(l *slog.Logger) ServicesOption {
	return func(s *Services) { s.log = l }
}

// NewServices returns a manager for the services on the engine behind cli;
// engine names it in logs and status ("system-docker" or "docker").
func NewServices(engine string, cli *client.Client, opts ...ServicesOption) *Services {
	s := &Services{
		engine: engine, cli: cli, log: slog.Default(),
		first: time.Second, limit: 30 * time.Second, reset: time.Minute,
		states: map[string]*serviceState{}, byID: map[string]string{},
		subscribed: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ReconcileResult says what Reconcile did to each service.
type ReconcileResult struct {
	Created, Recreated, Removed, Unchanged, Started []string
	// Failed maps a service to why it is not running.
	Failed map[string]error
}

// Reconcile makes the engine's containers match specs: it creates missing
// containers, recreates those whose spec hash changed, removes those of
// services no longer wanted, and leaves matching ones alone. Then it
// starts services in dependency order: a one-shot must exit 0 before its
// dependents start. Failures are logged and returned joined; the other
// services still start.
func (s *Services) Reconcile(ctx context.Context, specs []Spec) (ReconcileResult, error) {
	return s.reconcile(ctx, specs, true, rerunAll)
}

// Resume is Reconcile after System Docker restarted: the same, except that
// a one-shot that already finished with 0 since this process started is
// not run again (cloud-init-execute's runcmd runs once per boot).
func (s *Services) Resume(ctx context.Context, specs []Spec) (ReconcileResult, error) {
	return s.reconcile(ctx, specs, true, nil)
}

// Up creates, recreates or starts the named services (every service of
// specs when names is empty) and leaves the engine's other containers
// alone. Dependencies outside names are taken as running.
func (s *Services) Up(ctx context.Context, specs []Spec, names ...string) (ReconcileResult, error) {
	if len(names) == 0 {
		return s.reconcile(ctx, specs, false, rerunAll)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var subset []Spec
	for _, sp := range specs {
		if !want[sp.Name] {
			continue
		}
		delete(want, sp.Name)
		var after []string
		for _, d := range sp.After {
			if contains(names, d) {
				after = append(after, d)
			}
		}
		sp.After = after
		subset = append(subset, sp)
	}
	var missing []error
	for n := range want {
		missing = append(missing, fmt.Errorf("service %s: not defined or not enabled", n))
	}
	res, err := s.reconcile(ctx, subset, false, rerunAll)
	return res, errors.Join(append(missing, err)...)
}

// rerunAll runs every unchanged one-shot again (a reconcile's rerun).
func rerunAll(Spec) bool { return true }

// reconcile is Reconcile, Resume and Up: remove says whether containers
// of services not in specs go; rerun, whether an unchanged one-shot that
// already finished with 0 runs again (nil: none does).
func (s *Services) reconcile(ctx context.Context, specs []Spec, remove bool, rerun func(Spec) bool) (ReconcileResult, error) {
	res := ReconcileResult{Failed: map[string]error{}}
	list, err := s.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelService),
	})
	if err != nil {
		return res, fmt.Errorf("reconcile %s: list containers: %w", s.engine, err)
	}
	actual := map[string]container.Summary{}
	for _, c := range list.Items {
		actual[c.Labels[LabelService]] = c
	}
	want := map[string]Spec{}
	for _, sp := range specs {
		want[sp.Name] = sp
	}

	// Remove what is no longer wanted.
	var removed []string
	for name, c := range actual {
		if _, ok := want[name]; ok || !remove {
			continue
		}
		s.forget(name)
		if _, err := s.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			res.Failed[name] = fmt.Errorf("remove service %s: %w", name, err)
			continue
		}
		s.log.Info("service removed", "engine", s.engine, "service", name)
		removed = append(removed, name)
	}
	sort.Strings(removed)
	res.Removed = removed

	gatedNames := map[string]bool{}
	for name := range s.gates {
		gatedNames[name] = true
	}
	ordered, blocked := orderSpecs(specs, gatedNames)
	for name, err := range blocked {
		res.Failed[name] = err
		s.setError(want[name], err)
		s.log.Error("service not started", "engine", s.engine, "service", name, "err", err)
	}

	// Create or recreate, then start in dependency order; each service
	// waits only for its own dependencies.
	type result struct {
		done chan struct{}
		err  error
	}
	results := map[string]*result{}
	for _, sp := range ordered {
		results[sp.Name] = &result{done: make(chan struct{})}
	}
	// Each gate is waited for once, by the first of its dependents.
	gated := map[string]func() error{}
	for name, ready := range s.gates {
		gated[name] = sync.OnceValue(func() error {
			t0 := time.Now()
			err := ready(ctx)
			if err == nil {
				s.log.Info("ready", "engine", s.engine, "for", name, "waited", time.Since(t0).Round(time.Millisecond))
			}
			return err
		})
	}
	var mu sync.Mutex
	record := func(list *[]string, name string) {
		mu.Lock()
		*list = append(*list, name)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, sp := range ordered {
		r := results[sp.Name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(r.done)
			for _, dep := range sp.After {
				// A gated step outside the engine has no result.
				if d := results[dep]; d != nil {
					<-d.done
					if d.err != nil {
						r.err = fmt.Errorf("service %s not started: it comes after %s, which failed", sp.Name, dep)
						s.setError(sp, r.err)
						s.log.Error("service not started", "engine", s.engine, "service", sp.Name, "err", r.err)
						return
					}
				}
				if ready := gated[dep]; ready != nil {
					if err := ready(); err != nil {
						s.log.Warn("starting anyway", "engine", s.engine, "service", sp.Name, "after", dep, "err", err)
					}
				}
			}
			id, how, err := s.ensure(ctx, sp, actual)
			if err != nil {
				r.err = err
				s.setError(sp, err)
				s.log.Error("service failed", "engine", s.engine, "service", sp.Name, "err", err)
				return
			}
			switch how {
			case "created":
				record(&res.Created, sp.Name)
			case "recreated":
				record(&res.Recreated, sp.Name)
			default:
				record(&res.Unchanged, sp.Name)
			}
			if sp.OneShot && (rerun == nil || !rerun(sp)) && how == "unchanged" && (s.succeeded(sp.Name) || s.ranElsewhere(ctx, sp.Name, id)) {
				return
			}
			started, err := s.start(ctx, sp, id)
			if started {
				record(&res.Started, sp.Name)
			}
			if err != nil {
				r.err = err
				s.setError(sp, err)
				s.log.Error("service failed", "engine", s.engine, "service", sp.Name, "err", err)
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, sp := range ordered {
		if err := results[sp.Name].err; err != nil {
			res.Failed[sp.Name] = err
		}
	}
	names := make([]string, 0, len(res.Failed))
	for n := range res.Failed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		errs = append(errs, res.Failed[n])
	}
	for _, l := range []*[]string{&res.Created, &res.Recreated, &res.Unchanged, &res.Started} {
		sort.Strings(*l)
	}
	s.saveState()
	return res, errors.Join(errs...)
}

// ensure makes sure the service's container exists with the current spec
// and returns its ID and whether it was "created", "recreated" or
// "unchanged".
func (s *Services) ensure(ctx context.Context, sp Spec, actual map[string]container.Summary) (string, string, error) {
	how := "created"
	if c, ok := actual[sp.Name]; ok {
		if c.Labels[LabelHash] == sp.Hash() {
			s.track(sp, c.ID)
			return c.ID, "unchanged", nil
		}
		s.forget(sp.Name)
		if _, err := s.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return "", "", fmt.Errorf("recreate service %s: remove old container: %w", sp.Name, err)
		}
		how = "recreated"
	}
	opts, err := createOptions(sp)
	if err != nil {
		return "", "", err
	}
	cr, err := s.cli.ContainerCreate(ctx, opts)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", "", fmt.Errorf("create service %s: image %s is not loaded (images are never pulled at boot): %w", sp.Name, sp.Service.Image, err)
		}
		if cerrdefs.IsConflict(err) {
			// A container of that name that Berth does not own (or a stale
			// one): replace it.
			if _, rerr := s.cli.ContainerRemove(ctx, opts.Name, client.ContainerRemoveOptions{Force: true}); rerr == nil {
				cr, err = s.cli.ContainerCreate(ctx, opts)
			}
		}
		if err != nil {
			return "", "", fmt.Errorf("create service %s: %w", sp.Name, err)
		}
	}
	s.track(sp, cr.ID)
	s.log.Info("service "+how, "engine", s.engine, "service", sp.Name, "id", short(cr.ID))
	s.putFiles(ctx, sp, cr.ID)
	return cr.ID, how, nil
}

// putFiles puts the service's write_files entries into its new container
// (not yet started) through the engine's archive API. A failure is logged
// and the service starts without them: a bad entry never keeps it down.
func (s *Services) putFiles(ctx context.Context, sp Spec, id string) {
	if len(sp.Files) == 0 {
		return
	}
	var buf bytes.Buffer
	err := cloudinit.TarFiles(&buf, sp.Files, "/", time.Now())
	if err == nil {
		_, err = s.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf})
	}
	if err != nil {
		s.log.Warn("write_files into the service's container failed; starting it without them", "engine", s.engine, "service", sp.Name, "err", err)
		return
	}
	paths := make([]string, len(sp.Files))
	for i, f := range sp.Files {
		paths[i] = f.Path
	}
	s.log.Info("wrote files into the service's container", "engine", s.engine, "service", sp.Name, "paths", strings.Join(paths, ","))
}

// start starts a service's container unless it is create-only or already
// running. A one-shot is run to completion and its exit code checked.
func (s *Services) start(ctx context.Context, sp Spec, id string) (bool, error) {
	if sp.CreateOnly {
		return false, nil
	}
	if sp.OneShot {
		wait := s.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
		if _, err := s.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			return false, fmt.Errorf("start one-shot %s: %w", sp.Name, err)
		}
		s.markStarted(sp.Name)
		select {
		case w := <-wait.Result:
			code := int(w.StatusCode)
			s.setExit(sp.Name, code)
			if code != 0 {
				return true, fmt.Errorf("one-shot service %s exited with code %d", sp.Name, code)
			}
			s.log.Info("one-shot service done", "engine", s.engine, "service", sp.Name)
			return true, nil
		case err := <-wait.Error:
			return true, fmt.Errorf("wait for one-shot %s: %w", sp.Name, err)
		case <-ctx.Done():
			return true, fmt.Errorf("wait for one-shot %s: %w", sp.Name, ctx.Err())
		}
	}
	in, err := s.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return false, fmt.Errorf("start service %s: inspect: %w", sp.Name, err)
	}
	if in.Container.State != nil && in.Container.State.Running {
		return false, nil
	}
	if _, err := s.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return false, fmt.Errorf("start service %s: %w", sp.Name, err)
	}
	s.markStarted(sp.Name)
	s.log.Info("service started", "engine", s.engine, "service", sp.Name)
	return true, nil
}

// Restart restarts a service's container on purpose (not counted as a
// crash).
func (s *Services) Restart(ctx context.Context, name string, timeout time.Duration) error {
	s.mu.Lock()
	st := s.states[name]
	if st == nil || st.status.ContainerID == "" {
		s.mu.Unlock()
		return fmt.Errorf("restart %s: not a running service", name)
	}
	st.restarting = true
	id := st.status.ContainerID
	s.mu.Unlock()
	secs := int(timeout / time.Second)
	_, err := s.cli.ContainerRestart(ctx, id, client.ContainerRestartOptions{Timeout: &secs})
	s.mu.Lock()
	st.restarting = false
	st.startedAt = time.Now()
	st.status.StartedAt = st.startedAt
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("restart %s: %w", name, err)
	}
	return nil
}

// succeeded reports whether the service's last run exited 0.
func (s *Services) succeeded(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[name]
	return st != nil && st.status.LastExit != nil && *st.status.LastExit == 0
}

// ranElsewhere reports whether the one-shot name, which this process
// never saw exit, has finished with 0 in container id: `ros service up`,
// another process, ran it. Only a reconcile after the first one asks
// (the boot's first runs every one-shot, whatever an earlier boot left),
// so that run was this boot's. The exit is recorded.
func (s *Services) ranElsewhere(ctx context.Context, name, id string) bool {
	s.mu.Lock()
	st := s.states[name]
	seen := st != nil && st.status.LastExit != nil
	s.mu.Unlock()
	if seen {
		return false
	}
	in, err := s.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil || in.Container.State == nil {
		return false
	}
	cs := in.Container.State
	if cs.Running || cs.Restarting || cs.ExitCode != 0 || cs.FinishedAt == "" || strings.HasPrefix(cs.FinishedAt, "0001-") {
		return false
	}
	code := 0
	s.mu.Lock()
	if st := s.states[name]; st != nil {
		st.status.LastExit = &code
	}
	s.mu.Unlock()
	return true
}

func (s *Services) track(sp Spec, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[sp.Name]
	if st == nil {
		st = &serviceState{backoff: newBackoff(s.first, s.limit, s.reset)}
		s.states[sp.Name] = st
	}
	if st.status.ContainerID != "" && st.status.ContainerID != id {
		delete(s.byID, st.status.ContainerID)
	}
	st.spec = sp
	st.status.Name, st.status.Engine, st.status.ContainerID = sp.Name, s.engine, id
	st.status.Error, st.status.GaveUp = "", false
	s.byID[id] = sp.Name
}

func (s *Services) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.states[name]; st != nil {
		delete(s.byID, st.status.ContainerID)
		delete(s.states, name)
	}
}

func (s *Services) setError(sp Spec, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[sp.Name]
	if st == nil {
		st = &serviceState{spec: sp, backoff: newBackoff(s.first, s.limit, s.reset)}
		st.status.Name, st.status.Engine = sp.Name, s.engine
		s.states[sp.Name] = st
	}
	st.status.Error = err.Error()
}

func (s *Services) markStarted(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.states[name]; st != nil {
		st.startedAt = time.Now()
		st.status.StartedAt = st.startedAt
	}
}

func (s *Services) setExit(name string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.states[name]; st != nil {
		st.status.LastExit = &code
	}
}

// Status returns every known service's status, by name.
func (s *Services) Status() []ServiceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ServiceStatus, 0, len(s.states))
	for _, st := range s.states {
		out = append(out, st.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *Services) saveState() {
	if s.stateFile == "" {
		return
	}
	b, err := json.MarshalIndent(s.Status(), "", "  ")
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(s.stateFile), 0o755); err == nil {
		err = atomicfile.Write(s.stateFile, append(b, '\n'), 0o644)
		if err != nil {
			s.log.Warn("write service state", "path", s.stateFile, "err", err)
		}
	}
}

// Supervise follows the engine's container events until ctx ends and
// restarts services that die, per their restart policy, with crash-loop
// backoff. It re-subscribes (replaying from the last event seen) when the
// stream breaks, e.g. while the engine restarts.
func (s *Services) Supervise(ctx context.Context) {
	since := time.Now()
	first := true
	for ctx.Err() == nil {
		if !first {
			// Subscribe again only once the engine answers, so a
			// reconnect means it is back.
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			_, err := s.cli.Ping(pctx, client.PingOptions{})
			pcancel()
			if err != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		ev := s.cli.Events(sctx, client.EventsListOptions{
			Since: strconv.FormatInt(since.Unix(), 10),
			Filters: make(client.Filters).
				Add("type", string(events.ContainerEventType)).
				Add("event", string(events.ActionDie)).
				Add("label", LabelService),
		})
		if first {
			close(s.subscribed)
			first = false
		} else if s.onReconnect != nil {
			go s.onReconnect(ctx)
		}
	loop:
		for {
			select {
			case <-ctx.Done():
				cancel()
				return
			case m, ok := <-ev.Messages:
				if !ok {
					break loop
				}
				if m.TimeNano > 0 {
					since = time.Unix(0, m.TimeNano)
				}
				s.handleDie(ctx, m)
			case err := <-ev.Err:
				if ctx.Err() == nil && err != nil {
					s.log.Debug("event stream ended; resubscribing", "engine", s.engine, "err", err)
				}
				break loop
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Subscribed is closed once Supervise has asked for the event stream.
func (s *Services) Subscribed() <-chan struct{} { return s.subscribed }

func (s *Services) handleDie(ctx context.Context, m events.Message) {
	code, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
	s.mu.Lock()
	name, ok := s.byID[m.Actor.ID]
	if !ok {
		// A container `ros service up` (another process) made for a
		// service this supervisor knows, with the same spec: adopt it.
		n := m.Actor.Attributes[LabelService]
		if st := s.states[n]; st != nil && m.Actor.Attributes[LabelHash] == st.spec.Hash() {
			delete(s.byID, st.status.ContainerID)
			st.status.ContainerID = m.Actor.ID
			s.byID[m.Actor.ID] = n
			name, ok = n, true
			if st.startedAt.IsZero() {
				st.startedAt = time.Now()
			}
		}
	}
	st := s.states[name]
	if !ok || st == nil || s.stopping || st.spec.OneShot || st.spec.CreateOnly || st.restarting {
		s.mu.Unlock()
		return
	}
	if m.TimeNano != 0 && m.TimeNano <= st.lastDie {
		// Already handled this death (a replayed event).
		s.mu.Unlock()
		return
	}
	st.lastDie = m.TimeNano
	st.status.LastExit = &code
	uptime := time.Since(st.startedAt)
	st.startedAt = time.Time{}
	policy := st.spec.Service.Restart
	if !restartWanted(policy, code, st.status.Restarts) {
		st.status.GaveUp = true
		s.mu.Unlock()
		s.log.Warn("service exited; not restarting", "engine", s.engine, "service", name, "exit", code, "restart", policyName(policy), "restarts", st.status.Restarts)
		s.saveState()
		return
	}
	delay := st.backoff.next(uptime)
	id := m.Actor.ID
	s.mu.Unlock()
	s.log.Warn("service died; restarting", "engine", s.engine, "service", name, "exit", code, "in", delay, "restarts", st.status.Restarts)
	go func() {
		if delay > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
		s.mu.Lock()
		current := s.byID[id] == name && !s.stopping
		s.mu.Unlock()
		if !current {
			return
		}
		if in, err := s.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{}); err == nil && in.Container.State != nil && in.Container.State.Running {
			return // someone (Berth's own restart, `ros service up`) started it already
		}
		if _, err := s.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			s.log.Error("service restart failed", "engine", s.engine, "service", name, "err", err)
			s.setError(st.spec, err)
			s.saveState()
			return
		}
		s.mu.Lock()
		st.status.Restarts++
		st.startedAt = time.Now()
		st.status.StartedAt = st.startedAt
		s.mu.Unlock()
		s.log.Info("service restarted", "engine", s.engine, "service", name, "restarts", st.status.Restarts)
		s.saveState()
	}()
}

func policyName(p string) string {
	if p == "" {
		return "no"
	}
	return p
}

// StopAll stops supervising and stops every service's container, each
// within timeout: those named in first one after the other, then the
// rest at once.
func (s *Services) StopAll(ctx context.Context, timeout time.Duration, first ...string) error {
	s.mu.Lock()
	s.stopping = true
	byName := map[string]string{}
	for name, st := range s.states {
		if st.status.ContainerID != "" {
			byName[name] = st.status.ContainerID
		}
	}
	s.mu.Unlock()
	secs := int(timeout / time.Second)
	var (
		mu   sync.Mutex
		errs []error
	)
	// stop stops one service's container and logs how long it took: a
	// service that ignores SIGTERM holds up the shutdown by timeout.
	stop := func(name, id string) {
		t0 := time.Now()
		_, err := s.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
		took := time.Since(t0).Round(time.Millisecond)
		if err != nil && !cerrdefs.IsNotFound(err) {
			mu.Lock()
			errs = append(errs, fmt.Errorf("stop service %s: %w", name, err))
			mu.Unlock()
			return
		}
		if took >= timeout {
			s.log.Warn("service stopped", "service", name, "took", took, "why", "it did not end on SIGTERM and was killed")
			return
		}
		s.log.Info("service stopped", "service", name, "took", took)
	}
	for _, n := range first {
		if id, ok := byName[n]; ok {
			stop(n, id)
			delete(byName, n)
		}
	}
	var wg sync.WaitGroup
	for name, id := range byName {
		wg.Go(func() { stop(name, id) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// orderSpecs sorts specs so every service comes after its After entries.
// Services with a missing dependency or in a cycle (and everything after
// them) are returned in blocked with an error naming the services. A
// name in outside is satisfied by something else (a gated step).
func orderSpecs(specs []Spec, outside map[string]bool) ([]Spec, map[string]error) {
	byName := map[string]Spec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	blocked := map[string]error{}
	for _, s := range specs {
		for _, d := range s.After {
			if _, ok := byName[d]; !ok && !outside[d] {
				blocked[s.Name] = fmt.Errorf("service %s: comes after %s, which is not defined or not enabled", s.Name, d)
			}
		}
	}
	indeg := map[string]int{}
	next := map[string][]string{}
	for _, s := range specs {
		indeg[s.Name] += 0
		for _, d := range s.After {
			if _, ok := byName[d]; ok {
				indeg[s.Name]++
				next[d] = append(next[d], s.Name)
			}
		}
	}
	var ready []string
	for n, d := range indeg {
		if d == 0 {
			ready = append(ready, n)
		}
	}
	sort.Strings(ready)
	var order []string
	for len(ready) > 0 {
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		succ := next[n]
		sort.Strings(succ)
		for _, m := range succ {
			indeg[m]--
			if indeg[m] == 0 {
				ready = append(ready, m)
			}
		}
		sort.Strings(ready)
	}
	if len(order) < len(specs) {
		var cyc []string
		for n, d := range indeg {
			if d > 0 {
				cyc = append(cyc, n)
			}
		}
		sort.Strings(cyc)
		for _, n := range cyc {
			blocked[n] = fmt.Errorf("service %s: dependency cycle among %s", n, strings.Join(cyc, ", "))
		}
	}
	// Whatever comes after a blocked service is blocked too.
	for changed := true; changed; {
		changed = false
		for _, s := range specs {
			if _, ok := blocked[s.Name]; ok {
				continue
			}
			for _, d := range s.After {
				if _, ok := blocked[d]; ok {
					blocked[s.Name] = fmt.Errorf("service %s: comes after %s, which cannot start", s.Name, d)
					changed = true
					break
				}
			}
		}
	}
	var out []Spec
	for _, n := range order {
		if _, ok := blocked[n]; !ok {
			out = append(out, byName[n])
		}
	}
	return out, blocked
}
