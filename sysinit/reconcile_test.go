package sysinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/platforms/sysimages"
	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/client"
)

// engineWithImages starts a test System Docker with the OS images loaded.
func engineWithImages(t *testing.T) (*testEnv, *Daemon) {
	t.Helper()
	needEngine(t)
	imgs := testImages(t)
	e := newTestEnv(t)
	d := startTestDaemon(t, e)
	if _, err := LoadOSImages(context.Background(), d.Client, imgs, testVersion, filepath.Join(e.dir, "stamp")); err != nil {
		t.Fatalf("LoadOSImages: %v", err)
	}
	return e, d
}

func baseImage() string { return sysimages.Ref(sysimages.Base, testVersion) }

func svc(cmd string, labels ...string) cloudinit.Service {
	s := cloudinit.Service{Image: baseImage(), Net: "none", Command: []string{"sh", "-c", cmd}, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		s.Labels[labels[i]] = labels[i+1]
	}
	return s
}

func specsOf(services map[string]cloudinit.Service) []Spec {
	cfg := &cloudinit.Config{Rancher: cloudinit.Rancher{Services: map[string]*cloudinit.Service{}}}
	for n, s := range services {
		s := s
		cfg.Rancher.Services[n] = &s
	}
	return Specs(cfg)
}

func containerIDs(t *testing.T, cli *client.Client) map[string]string {
	t.Helper()
	l, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", LabelService)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range l.Items {
		out[c.Labels[LabelService]] = c.ID
	}
	return out
}

func TestReconcile(t *testing.T) {
	_, d := engineWithImages(t)
	ctx := context.Background()
	s := NewServices("system-docker", d.Client, WithServicesLogger(testLogger(t)))

	steps := []struct {
		name     string
		services map[string]cloudinit.Service
		want     ReconcileResult
	}{
		{"creates what is missing",
			map[string]cloudinit.Service{"alpha": svc("sleep 3600"), "bravo": svc("sleep 3600"), "charlie": svc("sleep 3600")},
			ReconcileResult{Created: []string{"alpha", "bravo", "charlie"}, Started: []string{"alpha", "bravo", "charlie"}}},
		{"recreates a changed spec, removes an unwanted one, leaves the rest",
			map[string]cloudinit.Service{"alpha": svc("sleep 3600"), "bravo": svc("sleep 3601")},
			ReconcileResult{Recreated: []string{"bravo"}, Removed: []string{"charlie"}, Unchanged: []string{"alpha"}, Started: []string{"bravo"}}},
		{"a second run changes nothing",
			map[string]cloudinit.Service{"alpha": svc("sleep 3600"), "bravo": svc("sleep 3601")},
			ReconcileResult{Unchanged: []string{"alpha", "bravo"}}},
	}
	var before map[string]string
	defer func() {
		t.Run("up of one service leaves the others alone", func(t *testing.T) {
			specs := specsOf(map[string]cloudinit.Service{"alpha": svc("sleep 3602"), "delta": svc("sleep 3600", cloudinit.LabelAfter, "alpha")})
			got, err := s.Up(ctx, specs, "delta")
			if err != nil {
				t.Fatalf("Up(delta): %v", err)
			}
			want := ReconcileResult{Created: []string{"delta"}, Started: []string{"delta"}, Failed: map[string]error{}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Up (-want +got):\n%s", diff)
			}
			ids := containerIDs(t, d.Client)
			if ids["alpha"] != before["alpha"] || ids["bravo"] != before["bravo"] {
				t.Errorf("Up(delta) touched other services: before %v, after %v", before, ids)
			}
			if _, err := s.Up(ctx, specs, "nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
				t.Errorf("Up(nosuch) = %v, want an error naming it", err)
			}
		})
	}()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := s.Reconcile(ctx, specsOf(st.services))
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			st.want.Failed = map[string]error{}
			if diff := cmp.Diff(st.want, got); diff != "" {
				t.Errorf("Reconcile (-want +got):\n%s", diff)
			}
			ids := containerIDs(t, d.Client)
			if len(ids) != len(st.services) {
				t.Errorf("containers = %v, want one per service %v", ids, st.services)
			}
			for _, n := range got.Unchanged {
				if before[n] != ids[n] {
					t.Errorf("unchanged service %s got a new container %s (was %s)", n, ids[n], before[n])
				}
			}
			before = ids
		})
	}
}

func TestReconcileOrderAndOneShots(t *testing.T) {
	e, d := engineWithImages(t)
	ctx := context.Background()
	shared := filepath.Join(e.dir, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	vol := shared + ":/shared"
	withVol := func(s cloudinit.Service) cloudinit.Service { s.Volumes = []string{vol}; return s }
	s := NewServices("system-docker", d.Client, WithServicesLogger(testLogger(t)))
	specs := specsOf(map[string]cloudinit.Service{
		// first is a one-shot that takes a while; second must wait for it.
		"first":  withVol(svc("sleep 0.5; echo first >> /shared/log", cloudinit.LabelDetach, "false")),
		"second": withVol(svc("echo second >> /shared/log; sleep 3600", cloudinit.LabelAfter, "first")),
		// third says it comes before second.
		"third": withVol(svc("echo third >> /shared/log", cloudinit.LabelDetach, "false", cloudinit.LabelBefore, "first")),
		// a failing one-shot stops its dependents, and only them.
		"broken":     svc("exit 3", cloudinit.LabelDetach, "false"),
		"dependent":  svc("sleep 3600", cloudinit.LabelAfter, "broken"),
		"transitive": svc("sleep 3600", cloudinit.LabelAfter, "dependent"),
		// a cycle and a missing dependency are named.
		"x":      svc("sleep 3600", cloudinit.LabelAfter, "y"),
		"y":      svc("sleep 3600", cloudinit.LabelAfter, "x"),
		"orphan": svc("sleep 3600", cloudinit.LabelAfter, "nosuch"),
		"create": svc("sleep 3600", cloudinit.LabelCreateOnly, "true"),
	})
	res, err := s.Reconcile(ctx, specs)
	if err == nil {
		t.Fatal("Reconcile = nil error, want the failures named")
	}
	t.Logf("Reconcile error:\n%v", err)
	for _, want := range []string{
		"one-shot service broken exited with code 3",
		"service dependent not started: it comes after broken, which failed",
		"service transitive not started: it comes after dependent, which failed",
		"dependency cycle among x, y",
		"comes after nosuch, which is not defined or not enabled",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Reconcile error does not say %q", want)
		}
	}
	if diff := cmp.Diff([]string{"broken", "first", "second", "third"}, res.Started); diff != "" {
		t.Errorf("started services (-want +got):\n%s", diff)
	}
	// second is a long-running service: started, its echo may still be
	// on its way.
	want := "third\nfirst\nsecond\n"
	var log []byte
	for i := 0; i < 100; i++ {
		if log, _ = os.ReadFile(filepath.Join(shared, "log")); string(log) == want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := string(log); got != want {
		t.Errorf("order of service output = %q, want %q", got, want)
	}
	in, err := d.Client.ContainerInspect(ctx, "create", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("createonly service has no container: %v", err)
	}
	if in.Container.State.Status != "created" {
		t.Errorf("createonly service state = %s, want created", in.Container.State.Status)
	}
}

// TestReconcileGate: what comes after a gated service (docker, whose
// gate is User Docker answering) is created only once the gated
// container runs and its gate has passed, the gate is asked once for all
// of them, and a failing gate is logged while its dependents still start.
func TestReconcileGate(t *testing.T) {
	_, d := engineWithImages(t)
	ctx := context.Background()
	specs := specsOf(map[string]cloudinit.Service{
		"engine": svc("sleep 3600"),
		"late1":  svc("sleep 3600", cloudinit.LabelAfter, "engine"),
		"late2":  svc("sleep 3600", cloudinit.LabelAfter, "engine"),
		"peer":   svc("sleep 3600"),
		// step is no service: a gated step of PID 1's.
		"stepdep": svc("sleep 3600", cloudinit.LabelAfter, "step"),
	})
	exists := func(name string) bool {
		_, err := d.Client.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		return err == nil
	}
	var calls atomic.Int32
	gate := func(ctx context.Context) error {
		calls.Add(1)
		in, err := d.Client.ContainerInspect(ctx, "engine", client.ContainerInspectOptions{})
		if err != nil || !in.Container.State.Running {
			t.Errorf("the gate was asked before its service ran: %v", err)
		}
		time.Sleep(300 * time.Millisecond) // the dependents would be created by now
		for _, n := range []string{"late1", "late2"} {
			if exists(n) {
				t.Errorf("%s was created before the gate of engine passed", n)
			}
		}
		return nil
	}
	var stepDone atomic.Bool
	step := func(context.Context) error {
		time.Sleep(200 * time.Millisecond)
		if exists("stepdep") {
			t.Error("stepdep was created before the step it comes after was done")
		}
		stepDone.Store(true)
		return nil
	}
	s := NewServices("system-docker", d.Client, WithServicesLogger(testLogger(t)), WithGate("engine", gate), WithGate("step", step))
	res, err := s.Reconcile(ctx, specs)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if diff := cmp.Diff([]string{"engine", "late1", "late2", "peer", "stepdep"}, res.Started); diff != "" {
		t.Errorf("started services (-want +got):\n%s", diff)
	}
	if !stepDone.Load() {
		t.Error("the step's gate was not waited for")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the gate was asked %d times, want once", n)
	}

	for _, n := range []string{"engine", "late1", "late2", "peer", "stepdep"} {
		if _, err := d.Client.ContainerRemove(ctx, n, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
	s = NewServices("system-docker", d.Client, WithServicesLogger(testLogger(t)),
		WithGate("engine", func(context.Context) error { return errors.New("wait for user docker: deadline exceeded") }),
		WithGate("step", func(context.Context) error { return errors.New("cloud-init-execute: exit status 1") }))
	res, err = s.Reconcile(ctx, specs)
	if err != nil {
		t.Fatalf("Reconcile with a failing gate: %v, want the dependents started anyway", err)
	}
	if diff := cmp.Diff([]string{"engine", "late1", "late2", "peer", "stepdep"}, res.Started); diff != "" {
		t.Errorf("started services with a failing gate (-want +got):\n%s", diff)
	}
}

// containerPid returns the host pid of a service's main process.
func containerPid(t *testing.T, cli *client.Client, name string) int {
	t.Helper()
	in, err := cli.ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return in.Container.State.Pid
}

// waitRunning waits until the container runs with a pid other than old,
// returning the time it took.
func waitRunning(t *testing.T, cli *client.Client, name string, old int, limit time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < limit {
		in, err := cli.ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
		if err == nil && in.Container.State.Running && in.Container.State.Pid != old {
			return time.Since(t0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return -1
}

func TestSupervisionRestartsAndBacksOff(t *testing.T) {
	_, d := engineWithImages(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewServices("system-docker", d.Client, WithServicesLogger(testLogger(t)), WithBackoff(400*time.Millisecond, 2*time.Second, time.Minute))
	go s.Supervise(ctx)
	<-s.Subscribed()
	long := svc("sleep 3600")
	long.Restart = "always"
	crash := svc("sleep 0.1; exit 7")
	crash.Restart = "always"
	never := svc("exit 2")
	never.Restart = "no"
	if _, err := s.Reconcile(ctx, specsOf(map[string]cloudinit.Service{"long": long, "crash": crash, "never": never})); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}

	t.Run("SIGKILL comes back within 1s", func(t *testing.T) {
		pid := containerPid(t, d.Client, "long")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		took := waitRunning(t, d.Client, "long", pid, 5*time.Second)
		if limit := restartLimit(t, d.Client); took < 0 || took > limit {
			t.Errorf("service long back after %v, want within the limit", took)
		}
		t.Logf("restart latency after SIGKILL: %v", took)
	})

	t.Run("crash loop backs off", func(t *testing.T) {
		// Delays 0, 0.4, 0.8, 1.6, 2, 2 s: about 7 restarts in 4 s, not 40.
		time.Sleep(4 * time.Second)
		var st ServiceStatus
		for _, x := range s.Status() {
			if x.Name == "crash" {
				st = x
			}
		}
		if st.Restarts < 2 || st.Restarts > 8 {
			t.Errorf("crash-looping service restarted %d times in 4s, want 2..8 (backoff)", st.Restarts)
		}
		if st.LastExit == nil || *st.LastExit != 7 {
			t.Errorf("crash-looping service last exit = %v, want 7", st.LastExit)
		}
	})

	t.Run("restart no gives up", func(t *testing.T) {
		for _, x := range s.Status() {
			if x.Name == "never" && (!x.GaveUp || x.Restarts != 0) {
				t.Errorf("service never: %+v, want given up with 0 restarts", x)
			}
		}
	})
}

// TestReconcileContainerFiles: write_files entries with `container:` are
// in the service's container when it first starts (content, mode and
// owner); a bad entry is logged and the service starts anyway; a change
// of a file's content recreates the container with the new one.
func TestReconcileContainerFiles(t *testing.T) {
	_, d := engineWithImages(t)
	ctx := context.Background()
	check := `test "$(cat /etc/berth/test)" = "%s" && test "$(stat -c %%a:%%u:%%g /etc/berth/test)" = 600:1100:1101`
	cfgOf := func(content string) *cloudinit.Config {
		checker := svc(fmt.Sprintf(check, content), cloudinit.LabelDetach, "false")
		plain := svc("sleep 3600")
		return &cloudinit.Config{
			WriteFiles: []cloudinit.WriteFile{
				{Path: "/etc/berth/test", Container: "checker", Content: content, Permissions: "0600", Owner: "1100:1101"},
				{Path: "/broken", Container: "plain", Content: "!!", Encoding: "b64"},
				{Path: "/etc/host-only", Content: "not for any container"},
			},
			Rancher: cloudinit.Rancher{Services: map[string]*cloudinit.Service{"checker": &checker, "plain": &plain}},
		}
	}
	var logs bytes.Buffer
	s := NewServices("system-docker", d.Client, WithServicesLogger(slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testWriter{t}), nil))))
	res, err := s.Reconcile(ctx, Specs(cfgOf("console content")))
	if err != nil || len(res.Failed) != 0 {
		t.Fatalf("Reconcile: %v; failed %v (the checker did not find its file as written)", err, res.Failed)
	}
	if !contains(res.Started, "plain") {
		t.Errorf("plain, whose file could not be decoded, did not start: %+v", res)
	}
	if !strings.Contains(logs.String(), "write_files into the service's container failed") || !strings.Contains(logs.String(), "/broken") {
		t.Errorf("no warning naming the bad entry:\n%s", logs.String())
	}
	res, err = s.Reconcile(ctx, Specs(cfgOf("new content")))
	if err != nil || len(res.Failed) != 0 || !contains(res.Recreated, "checker") || contains(res.Recreated, "plain") {
		t.Errorf("Reconcile with a changed file: %v; %+v, want checker alone recreated and passing", err, res)
	}
}
