package sysinit

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// sharedDir makes dir a shared mount (a bind of itself), as PID 1 makes
// every mount: the services bind /mnt and /media with rshared
// propagation, which the engine refuses from a private mount.
func sharedDir(t *testing.T, dir string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", dir, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	if err := syscall.Mount("", dir, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatalf("make %s shared: %v", dir, err)
	}
}

// testConfig is a config whose System Docker lives in the test's temp dir,
// with a one-shot, a long-running service, and the default `docker`
// service (User Docker) with its host paths moved under root.
func testConfig(t *testing.T, e *testEnv, root string) *cloudinit.Config {
	t.Helper()
	cfg := loadDefaults(t)
	f := false
	cfg.Rancher.SystemDocker = e.engine
	cfg.Rancher.Defaults.SystemDockerLogs = "/var/log/system-docker.log"
	// The user engine shares the host's network here: no bridge, no
	// iptables, so the test leaves the host's netfilter alone.
	cfg.Rancher.Docker.Bridge = "none"
	cfg.Rancher.Docker.Iptables = &f
	cfg.Rancher.Docker.IPForward = &f
	cfg.Rancher.Docker.Group = ""
	dockerSvc := *cfg.Rancher.Services["docker"]
	var vols []string
	for _, v := range dockerSvc.Volumes {
		src, rest, _ := strings.Cut(v, ":")
		switch src {
		case "/var/lib/docker", "/var/run/user-docker", "/etc/docker", "/home", "/opt", "/mnt", "/media":
			src = filepath.Join(root, src)
			os.MkdirAll(src, 0o755)
		}
		vols = append(vols, src+":"+rest)
	}
	dockerSvc.Volumes = vols
	sharedDir(t, root)
	oneshot := svc("echo setup done", cloudinit.LabelDetach, "false")
	oneshot.Image = "berth/base:${VERSION}"
	long := svc("trap 'exit 0' TERM; while :; do sleep 1; done", cloudinit.LabelAfter, "setup")
	long.Restart = "always"
	dockerSvc.Labels = map[string]string{cloudinit.LabelAfter: "setup"}
	cfg.Rancher.Services = map[string]*cloudinit.Service{"setup": &oneshot, "long": &long, "docker": &dockerSvc}
	return cfg
}

func TestStartEnginesWithUserDocker(t *testing.T) {
	needEngine(t)
	imgs := testImages(t)
	e := newTestEnv(t)
	root := filepath.Join(e.dir, "root")
	// A user-supplied image for User Docker, loaded from the preload dir.
	pre := filepath.Join(root, userPreloadDir)
	if err := os.MkdirAll(pre, 0o755); err != nil {
		t.Fatal(err)
	}
	// The user-scope service below runs berth/base on User Docker.
	writePreload(t, filepath.Join(pre, "base.tar"), baseImage())
	cfg := testConfig(t, e, root)
	// A user-scope service: it runs on User Docker.
	usvc := svc("trap 'exit 0' TERM; while :; do sleep 1; done", cloudinit.LabelScope, ScopeUser)
	usvc.Restart = "always"
	cfg.Rancher.Services["usvc"] = &usvc
	ctx := context.Background()
	t0 := time.Now()
	eng, err := StartEngines(ctx, cfg, e.engineOptions(t, root, imgs)...)
	if err != nil {
		t.Fatalf("StartEngines: %v", err)
	}
	t.Logf("StartEngines returned after %v (System Docker start to services started)", time.Since(t0).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = eng.Shutdown(context.Background())
		}
	})
	if eng.StartErr != nil {
		t.Fatalf("services failed to start: %v", eng.StartErr)
	}
	if want := []string{"docker", "long", "setup"}; strings.Join(eng.Started.Started, ",") != strings.Join(want, ",") {
		t.Errorf("started = %v, want %v", eng.Started.Started, want)
	}

	// User Docker answers on root/var/run/docker.sock (the link PID 1 made)
	// and has the preloaded image.
	ucli, err := NewClient(filepath.Join(root, "/var/run/docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ucli.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := ucli.ImageInspect(ctx, baseImage()); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("User Docker did not come up with the preloaded image: %v\nuser docker log:\n%s", err, userDockerLogs(t, eng))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("User Docker ready with the preloaded image %v after StartEngines returned", time.Since(t0).Round(time.Millisecond))

	waitUserService := func(t *testing.T, limit time.Duration) {
		t.Helper()
		t1 := time.Now()
		for time.Since(t1) < limit {
			in, err := ucli.ContainerInspect(ctx, "usvc", client.ContainerInspectOptions{})
			if err == nil && in.Container.State.Running {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("user-scope service usvc not running on User Docker within %v", limit)
	}
	t.Run("a user-scope service runs on User Docker", func(t *testing.T) {
		waitUserService(t, 30*time.Second)
		if _, err := eng.System.Client.ContainerInspect(ctx, "usvc", client.ContainerInspectOptions{}); err == nil {
			t.Error("user-scope service usvc also exists on System Docker")
		}
	})

	t.Run("User Docker killed: it and its user-scope services come back", func(t *testing.T) {
		pid := containerPid(t, eng.System.Client, "docker")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if took := waitRunning(t, eng.System.Client, "docker", pid, 10*time.Second); took < 0 {
			t.Fatal("the docker service did not come back")
		}
		waitUserService(t, 60*time.Second)
	})

	t.Run("docker run --rm echo ok", func(t *testing.T) {
		out := runUser(t, ucli, "echo ok")
		if out != "ok" {
			t.Errorf("output = %q, want ok", out)
		}
	})

	t.Run("rm -f of every user container leaves the system services running", func(t *testing.T) {
		cr, err := ucli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: baseImage(), Cmd: []string{"sleep", "3600"}}, HostConfig: &container.HostConfig{NetworkMode: "none"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ucli.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		l, err := ucli.ContainerList(ctx, client.ContainerListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range l.Items {
			if _, err := ucli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
				t.Errorf("rm -f %s: %v", c.ID, err)
			}
		}
		for _, name := range []string{"long", "docker"} {
			in, err := eng.System.Client.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
			if err != nil || !in.Container.State.Running {
				t.Errorf("system service %s after rm -f on User Docker: running=%v err=%v", name, err == nil && in.Container.State.Running, err)
			}
		}
		if _, err := ucli.Ping(ctx, client.PingOptions{}); err != nil {
			t.Errorf("User Docker after rm -f: %v", err)
		}
	})

	t.Run("a user container cannot be given System Docker's socket", func(t *testing.T) {
		sysSock := eng.System.Socket()
		ctx := context.Background()
		cr, err := ucli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config:     &container.Config{Image: baseImage(), Cmd: []string{"sh", "-c", "test -S /s.sock && echo socket || echo nosocket"}, Tty: true},
			HostConfig: &container.HostConfig{NetworkMode: "none", Binds: []string{sysSock + ":/s.sock"}},
		})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		defer ucli.ContainerRemove(ctx, cr.ID, client.ContainerRemoveOptions{Force: true})
		wait := ucli.ContainerWait(ctx, cr.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
		if _, err := ucli.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
			t.Logf("start with the system socket bound: %v (refused: fine)", err)
			return
		}
		<-wait.Result
		r, err := ucli.ContainerLogs(ctx, cr.ID, client.ContainerLogsOptions{ShowStdout: true})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, _ := io.ReadAll(r)
		if got := strings.TrimSpace(string(b)); got != "nosocket" {
			t.Errorf("-v %s:/s.sock in a user container: %q, want nosocket", sysSock, got)
		}
	})

	t.Run("a killed system service comes back", func(t *testing.T) {
		pid := containerPid(t, eng.System.Client, "long")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if took := waitRunning(t, eng.System.Client, "long", pid, 5*time.Second); took < 0 || took > restartLimit(t, eng.System.Client) {
			t.Errorf("long back after %v, want within the limit", took)
		}
	})

	t.Run("System Docker killed: it and the services come back", func(t *testing.T) {
		old := eng.System.Pid()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		for time.Since(t1) < 60*time.Second {
			if eng.System.Pid() != old {
				in, err := eng.System.Client.ContainerInspect(ctx, "long", client.ContainerInspectOptions{})
				if err == nil && in.Container.State.Running {
					t.Logf("System Docker and service long back %v after SIGKILL of dockerd", time.Since(t1).Round(time.Millisecond))
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("after SIGKILL of System Docker, service long is not running again within 60s")
	})

	t.Run("Shutdown stops everything", func(t *testing.T) {
		t1 := time.Now()
		stopped = true
		if err := eng.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		t.Logf("Shutdown took %v", time.Since(t1).Round(time.Millisecond))
		if alive(eng.System.Pid()) {
			t.Errorf("System Docker (pid %d) still runs after Shutdown", eng.System.Pid())
		}
	})
}

func userDockerLogs(t *testing.T, eng *Engines) string {
	r, err := eng.System.Client.ContainerLogs(context.Background(), "docker", client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "30"})
	if err != nil {
		return err.Error()
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// runUser is `docker run --rm --net none BASE sh -c cmd` on User Docker.
func runUser(t *testing.T, cli *client.Client, cmd string) string {
	t.Helper()
	ctx := context.Background()
	cr, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: baseImage(), Cmd: []string{"sh", "-c", cmd}, Tty: true},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	defer cli.ContainerRemove(ctx, cr.ID, client.ContainerRemoveOptions{Force: true})
	wait := cli.ContainerWait(ctx, cr.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := cli.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	select {
	case w := <-wait.Result:
		if w.StatusCode != 0 {
			t.Errorf("exit code %d", w.StatusCode)
		}
	case err := <-wait.Error:
		t.Fatalf("wait: %v", err)
	}
	r, err := cli.ContainerLogs(ctx, cr.ID, client.ContainerLogsOptions{ShowStdout: true})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(bytes.TrimSpace(b))
}

func TestReloadAddsAndRestarts(t *testing.T) {
	needEngine(t)
	imgs := testImages(t)
	e := newTestEnv(t)
	root := filepath.Join(e.dir, "root")
	cfg := testConfig(t, e, root)
	delete(cfg.Rancher.Services, "docker")
	ctx := context.Background()
	eng, err := StartEngines(ctx, cfg, e.engineOptions(t, root, imgs)...)
	if err != nil {
		t.Fatalf("StartEngines: %v", err)
	}
	defer eng.Shutdown(context.Background())
	before := containerPid(t, eng.System.Client, "long")

	next := testConfig(t, e, root)
	delete(next.Rancher.Services, "docker")
	long := *next.Rancher.Services["long"]
	long.Labels = map[string]string{cloudinit.LabelAfter: "setup", cloudinit.LabelReloadConfig: "true"}
	added := svc("trap 'exit 0' TERM; while :; do sleep 1; done")
	added.Restart = "always"
	next.Rancher.Services["long"] = &long
	next.Rancher.Services["added"] = &added
	res, err := eng.Reload(ctx, next)
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !contains(res.Created, "added") {
		t.Errorf("Reload created %v, want added", res.Created)
	}
	// The new service is supervised: killed, it comes back.
	pid := containerPid(t, eng.System.Client, "added")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if took := waitRunning(t, eng.System.Client, "added", pid, 5*time.Second); took < 0 || took > restartLimit(t, eng.System.Client) {
		t.Errorf("service added (from Reload) back after %v, want within the limit", took)
	}
	// long changed labels, so it was recreated: a new process either way.
	if after := containerPid(t, eng.System.Client, "long"); after == before {
		t.Errorf("service long kept pid %d across a reload that changed it", after)
	}
	// Reloading the same config restarts long (reloadconfig) in place.
	mid := containerPid(t, eng.System.Client, "long")
	res, err = eng.Reload(ctx, next)
	if err != nil {
		t.Fatalf("second Reload: %v", err)
	}
	if !contains(res.Unchanged, "long") {
		t.Errorf("second Reload: unchanged = %v, want long in it", res.Unchanged)
	}
	if after := containerPid(t, eng.System.Client, "long"); after == mid || after == 0 {
		t.Errorf("reloadconfig service long: pid %d -> %d, want restarted", mid, after)
	}
	time.Sleep(300 * time.Millisecond) // let the restart's die event arrive
	for _, st := range eng.Status() {
		if st.Name == "long" && st.Restarts != 0 {
			t.Errorf("service long: %d restarts counted after a reload, want 0", st.Restarts)
		}
	}
	// The one-shot setup ran at the start; two reloads left it alone.
	if got := serviceOutput(t, eng.System.Client, "setup"); got != "setup done" {
		t.Errorf("one-shot setup's output after two reloads: %q, want one run", got)
	}
	// A one-shot that another process (ros service up) brought up and
	// that finished: the reload that follows does not run it again.
	upped := svc("echo upped")
	upped.Labels[cloudinit.LabelDetach] = "false"
	next.Rancher.Services["upped"] = &upped
	var upSpecs []Spec
	for _, sp := range ResolveImages(Specs(next), testVersion) {
		if sp.Name == "upped" {
			upSpecs = append(upSpecs, sp)
		}
	}
	if _, err := NewServices("system-docker", eng.System.Client).Up(ctx, upSpecs); err != nil {
		t.Fatalf("Up upped: %v", err)
	}
	res, err = eng.Reload(ctx, next)
	if err != nil {
		t.Fatalf("third Reload: %v", err)
	}
	if !contains(res.Unchanged, "upped") || contains(res.Started, "upped") {
		t.Errorf("third Reload: unchanged %v, started %v; want upped unchanged and not started", res.Unchanged, res.Started)
	}
	if got := serviceOutput(t, eng.System.Client, "upped"); got != "upped" {
		t.Errorf("one-shot upped's output after the reload: %q, want the one run of Up", got)
	}
}

// serviceOutput is a service container's stdout, trimmed.
func serviceOutput(t *testing.T, cli *client.Client, name string) string {
	t.Helper()
	r, err := cli.ContainerLogs(context.Background(), name, client.ContainerLogsOptions{ShowStdout: true})
	if err != nil {
		t.Fatalf("logs %s: %v", name, err)
	}
	defer r.Close()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, r); err != nil {
		t.Fatalf("logs %s: %v", name, err)
	}
	return strings.TrimSpace(out.String())
}

// TestStartServicesRestartsSystemDockerForNewFlags is PID 1's early start:
// System Docker starts from the local config, then the datasources' config
// turns on rancher.system_docker.debug. StartServices must restart it with
// the new flag before starting the services on it, not keep the old one.
func TestStartServicesRestartsSystemDockerForNewFlags(t *testing.T) {
	needEngine(t)
	imgs := testImages(t)
	e := newTestEnv(t)
	root := filepath.Join(e.dir, "root")
	local := testConfig(t, e, root)
	delete(local.Rancher.Services, "docker")
	ctx := context.Background()
	eng, err := StartSystem(ctx, local, e.engineOptions(t, root, imgs)...)
	if err != nil {
		t.Fatalf("StartSystem: %v", err)
	}
	t.Cleanup(func() { _ = eng.Shutdown(context.Background()) })
	first := eng.System.Pid()
	if info, err := eng.System.Client.Info(ctx, client.InfoOptions{}); err != nil || info.Info.Debug {
		t.Fatalf("System Docker from the local config: debug=%v, %v; want debug off", info.Info.Debug, err)
	}

	final := testConfig(t, e, root)
	delete(final.Rancher.Services, "docker")
	on := true
	final.Rancher.SystemDocker.Debug = &on
	if err := eng.StartServices(ctx, final); err != nil {
		t.Fatalf("StartServices: %v", err)
	}
	if eng.System.Pid() == first {
		t.Errorf("System Docker still runs as pid %d, started with the local config's flags", first)
	}
	info, err := eng.System.Client.Info(ctx, client.InfoOptions{})
	if err != nil || !info.Info.Debug {
		t.Errorf("System Docker after StartServices: debug=%v, %v; want debug on (the final config's flag)", info.Info.Debug, err)
	}
	if eng.StartErr != nil || strings.Join(eng.Started.Started, ",") != "long,setup" {
		t.Errorf("services started = %v, %v; want [long setup] on the restarted System Docker", eng.Started.Started, eng.StartErr)
	}
	if _, err := eng.System.Client.ContainerInspect(ctx, "long", client.ContainerInspectOptions{}); err != nil {
		t.Errorf("service long is not on the restarted System Docker: %v", err)
	}
}
