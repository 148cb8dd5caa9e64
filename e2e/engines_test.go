//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthos/berth/platforms/sysimages"
)

// UserDockerLine is what PID 1 prints when User Docker first answers
// (sysinit.PID1UserDockerLine).
const UserDockerLine = "User Docker ready"

// preloadDir is where User Docker's image tarballs are loaded from.
const preloadDir = "/var/lib/rancher/preload/docker"

var busybox struct {
	once sync.Once
	path string
	err  error
}

// busyboxTarball builds (once per test binary) a `docker save` tarball of
// busybox:latest from the host's static busybox: the image the e2e cases
// run on User Docker, since no registry is reachable.
func busyboxTarball(t *testing.T) string {
	t.Helper()
	busybox.once.Do(func() {
		bb, err := exec.LookPath("busybox")
		if err != nil {
			busybox.err = fmt.Errorf("busybox not installed (apt-get install busybox-static): %w", err)
			return
		}
		list, err := exec.Command(bb, "--list-full").Output()
		if err != nil {
			busybox.err = fmt.Errorf("busybox --list-full: %w", err)
			return
		}
		files := []sysimages.File{{Path: "/bin/busybox", Source: bb, Mode: 0o755}, {Path: "/tmp", Dir: true, Mode: 0o1777}}
		for _, n := range strings.Fields(string(list)) {
			if p := "/" + n; p != "/bin/busybox" {
				files = append(files, sysimages.File{Path: p, Link: "/bin/busybox"})
			}
		}
		dir, err := os.MkdirTemp("", "berth-e2e-busybox")
		if err != nil {
			busybox.err = err
			return
		}
		busybox.path = filepath.Join(dir, "busybox.tar")
		busybox.err = sysimages.WriteImage(busybox.path, "busybox:latest", files,
			v1.Config{Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"sh"}}, time.Unix(0, 0))
	})
	if busybox.err != nil {
		t.Fatalf("busybox image: %v", busybox.err)
	}
	return busybox.path
}

// preloadURL is where preloadServer serves the busybox tarball.
func preloadURL(addr string) string { return "http://" + addr + "/busybox.tar" }

// preloadServer serves the busybox tarball at addr:80 in the guest (and
// userData, when not empty, at /user-data) and returns the guestfwd
// option.
func preloadServer(t *testing.T, addr, userData string) string {
	t.Helper()
	tarball := busyboxTarball(t)
	return serveAt(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/user-data" && userData != "" {
			fmt.Fprint(w, userData)
			return
		}
		http.ServeFile(w, r, tarball)
	}))
}

// preloadRuncmd are the runcmd entries that mark runcmd as run and fetch
// the busybox tarball into User Docker's preload directory. runcmd runs
// before the docker service starts, so User Docker loads it when it
// first answers.
func preloadRuncmd(url string) string {
	return fmt.Sprintf(`runcmd:
  - echo runcmd-ran > /var/log/e2e-runcmd
  - mkdir -p %[1]s && wget -q -O %[1]s/busybox.tar %[2]s
`, preloadDir, url)
}

// waitBusybox is a shell prefix that waits up to a minute for the
// preloaded busybox image on User Docker (loaded right after its ready
// line).
const waitBusybox = "for i in $(seq 60); do docker image inspect busybox >/dev/null 2>&1 && break; sleep 1; done; "

// killAndWaitBack is a console command that SIGKILLs the system service
// name through System Docker and waits up to a minute for it to run again
// (a new start time); it prints how long that took and fails otherwise.
func killAndWaitBack(name string) string {
	return fmt.Sprintf(`b=$(system-docker inspect -f '{{.State.StartedAt}}' %[1]s); system-docker kill %[1]s >/dev/null; `+
		`for i in $(seq 60); do s=$(system-docker inspect -f '{{.State.Running}} {{.State.StartedAt}}' %[1]s); `+
		`case "$s" in "true $b") ;; true*) echo "back within $i s"; exit_=0; break;; esac; sleep 1; done; [ "$exit_" = 0 ]`, name)
}

// engineChecks is what a user does first with the engines of a booted
// machine: runcmd took effect, User Docker runs a container, a published
// port answers from outside, removing every user container leaves the OS
// alone, and a killed system service comes back.
func engineChecks(t *testing.T, vm *VM) {
	t.Run("runcmd", func(t *testing.T) {
		out, code, err := vm.Console("for i in $(seq 90); do [ -f /var/log/e2e-runcmd ] && break; sleep 1; done; cat /var/log/e2e-runcmd", 2*time.Minute)
		if err != nil || code != 0 || out != "runcmd-ran" {
			t.Errorf("runcmd: exit %d, %v: %q", code, err, out)
		}
	})
	t.Run("User Docker runs a container", func(t *testing.T) {
		waitUserDocker(t, vm)
		// The preloaded image is loaded right after the ready line.
		out, code, err := vm.Console(waitBusybox+"docker run --rm busybox echo ok", 3*time.Minute)
		if err != nil || code != 0 || out != "ok" {
			t.Fatalf("docker run --rm busybox echo ok: exit %d, %v: %q", code, err, out)
		}
	})
	t.Run("containers get the machine's DNS servers", func(t *testing.T) {
		out, code, err := vm.Console("grep -h '^nameserver' /etc/resolv.conf | sort; echo --; docker run --rm busybox grep -h '^nameserver' /etc/resolv.conf | sort", 2*time.Minute)
		host, ctr, _ := strings.Cut(out, "--")
		if err != nil || code != 0 || strings.TrimSpace(host) == "" || strings.TrimSpace(host) != strings.TrimSpace(ctr) {
			t.Errorf("resolv.conf: exit %d, %v: the machine's %q, a container's %q; want the same, non-empty", code, err, host, ctr)
		}
	})
	t.Run("a mount made after boot reaches the console and User Docker", func(t *testing.T) {
		// On the host, then one made in the console: both must show in
		// the console, on the host, and in a User Docker container.
		out, code, err := vm.Console("mkdir -p /mnt/late && mount -t tmpfs late /mnt/late && echo host-mount > /mnt/late/f && "+
			"system-docker exec console sh -c 'cat /mnt/late/f; mkdir -p /media/fromconsole && mount -t tmpfs c /media/fromconsole && echo console-mount > /media/fromconsole/g' && "+
			"cat /media/fromconsole/g && docker run --rm -v /mnt/late:/a -v /media/fromconsole:/b busybox cat /a/f /b/g", 2*time.Minute)
		if want := "host-mount\nconsole-mount\nhost-mount\nconsole-mount"; err != nil || code != 0 || out != want {
			t.Errorf("late mounts: exit %d, %v: %q, want %q", code, err, out, want)
		}
	})
	t.Run("published port answers from the host", func(t *testing.T) {
		out, code, err := vm.Console("docker run -d --name e2e-web -p 8080:80 busybox sh -c 'echo e2e-published > /tmp/index.html && exec httpd -f -p 80 -h /tmp'", 2*time.Minute)
		if err != nil || code != 0 {
			t.Fatalf("docker run -p 8080:80: exit %d, %v: %s", code, err, out)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/", vm.HTTPPort)
		deadline := time.Now().Add(time.Minute)
		for {
			body, err := httpGet(url)
			if err == nil && strings.TrimSpace(body) == "e2e-published" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s (guest port 8080, the container's 80): %v %q", url, err, body)
			}
			time.Sleep(2 * time.Second)
		}
	})
	t.Run("docker rm -f of everything leaves the system services", func(t *testing.T) {
		out, code, err := vm.Console("docker rm -f $(docker ps -qa) >/dev/null; docker ps -qa | wc -l; system-docker ps --format '{{.Names}}' | sort | tr '\\n' ' '; echo", 2*time.Minute)
		if err != nil || code != 0 {
			t.Fatalf("exit %d, %v: %s", code, err, out)
		}
		left, running, _ := strings.Cut(out, "\n")
		if strings.TrimSpace(left) != "0" {
			t.Errorf("user containers left after rm -f: %s", left)
		}
		names := strings.Fields(running)
		for _, want := range []string{"console", "docker", "syslog", "udev"} {
			if !slices.Contains(names, want) {
				t.Errorf("system services after rm -f on User Docker = %q, want %s running", names, want)
			}
		}
	})
	t.Run("a killed system service comes back", func(t *testing.T) {
		out, code, err := vm.Console(killAndWaitBack("syslog"), 2*time.Minute)
		if err != nil || code != 0 {
			t.Fatalf("syslog after system-docker kill: exit %d, %v: %s", code, err, out)
		}
		t.Log(out)
	})
}

// waitUserDocker waits for PID 1's User Docker ready line and checks that
// `docker info` answers on the console.
func waitUserDocker(t *testing.T, vm *VM) {
	t.Helper()
	l, _, err := vm.WaitLine(regexp.MustCompile(regexp.QuoteMeta(UserDockerLine)), 0, 5*time.Minute)
	if err != nil {
		logs, _, _ := vm.Console("system-docker logs --tail 20 docker 2>&1", time.Minute)
		t.Fatalf("%v; the docker service's log:\n%s", err, logs)
	}
	t.Logf("User Docker ready %.1f s after qemu start", l.At.Seconds())
	if out, code, err := vm.Console("docker info --format '{{.ServerVersion}}'", time.Minute); err != nil || code != 0 {
		t.Errorf("docker info: exit %d, %v: %s", code, err, out)
	}
}

func httpGet(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
