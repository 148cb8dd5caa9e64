package sysinit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/moby/moby/client"
)

// supervisorConf is what TestSupervisorAsPID1 hands the process it runs
// as PID 1 of a fresh PID namespace.
type supervisorConf struct {
	Config    *cloudinit.Config `json:"config"`
	Root      string            `json:"root"`
	Images    string            `json:"images"`
	ExtraArgs []string          `json:"extra_args"`
}

// supervisorMain runs in the test binary re-executed under
// `unshare --pid --fork --mount-proc`. As PID 1 it does what Berth's PID 1
// does: start the engines process and reap every orphan. When the engines
// process has shut down, it reports any process left in the namespace.
func supervisorMain() int {
	if os.Getenv("BERTH_TEST_ROLE") == "engines" {
		return enginesMain()
	}
	if os.Getpid() != 1 {
		fmt.Println("RESULT error=not-pid1")
		return 2
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), "BERTH_TEST_ROLE=engines")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Println("RESULT error=" + strings.ReplaceAll(err.Error(), " ", "_"))
		return 2
	}
	child := cmd.Process.Pid
	code := -1
	reaped := 0
	for code < 0 {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err != nil {
			break
		}
		if pid == child {
			code = ws.ExitStatus()
		} else {
			reaped++
		}
	}
	// Let what the engines stopped finish exiting, reaping as they go.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var ws syscall.WaitStatus
		pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid > 0 {
			reaped++
			continue
		}
		if len(otherProcs()) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	left := otherProcs()
	fmt.Printf("RESULT orphans_reaped=%d\n", reaped)
	fmt.Printf("RESULT left=%d\n", len(left))
	for _, l := range left {
		fmt.Printf("RESULT left_process=%s\n", strings.ReplaceAll(l, " ", "_"))
	}
	return code
}

// otherProcs lists "pid state comm" of every process but PID 1.
func otherProcs() []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == 1 {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < 0 || j+2 >= len(s) {
			continue
		}
		out = append(out, fmt.Sprintf("%d %c %s", pid, s[j+2], s[i+1:j]))
	}
	return out
}

func vmRSS() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.ReplaceAll(strings.TrimSpace(v), " ", "")
		}
	}
	return "?"
}

func enginesMain() int {
	var c supervisorConf
	b, err := os.ReadFile(os.Getenv("BERTH_TEST_SUPERVISOR_CONF"))
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		fmt.Println("RESULT error=conf")
		return 2
	}
	// unshare made the new namespace's mounts private: share the root
	// again (testConfig's sharedDir), for the rshared binds of /mnt and
	// /media, as PID 1 shares its mounts.
	if err := syscall.Mount("", c.Root, "", syscall.MS_SHARED, ""); err != nil {
		fmt.Println("RESULT error=share-root")
		return 2
	}
	ctx := context.Background()
	t0 := time.Now()
	eng, err := StartEngines(ctx, c.Config, WithRoot(c.Root), WithImageDir(c.Images), WithVersion(testVersion), WithSystemDockerArgs(c.ExtraArgs...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "StartEngines:", err)
		return 3
	}
	fmt.Printf("RESULT started_ms=%d\n", time.Since(t0).Milliseconds())
	if eng.StartErr != nil {
		fmt.Fprintln(os.Stderr, "services:", eng.StartErr)
		fmt.Println("RESULT start_err=1")
	}
	in, err := eng.System.Client.ContainerInspect(ctx, "long", client.ContainerInspectOptions{})
	if err == nil {
		old := in.Container.State.Pid
		_ = syscall.Kill(old, syscall.SIGKILL)
		t1 := time.Now()
		for time.Since(t1) < 5*time.Second {
			in, err := eng.System.Client.ContainerInspect(ctx, "long", client.ContainerInspectOptions{})
			if err == nil && in.Container.State.Running && in.Container.State.Pid != old {
				fmt.Printf("RESULT restart_ms=%d\n", time.Since(t1).Milliseconds())
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)
	fmt.Printf("RESULT rss=%s\n", vmRSS())
	t2 := time.Now()
	if err := eng.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Shutdown:", err)
		fmt.Println("RESULT shutdown_err=1")
	}
	fmt.Printf("RESULT shutdown_ms=%d\n", time.Since(t2).Milliseconds())
	return 0
}

// TestSupervisorAsPID1 runs the engines under a PID 1 that reaps like
// Berth's, in a fresh PID namespace: a killed service comes back, and
// after shutdown no process, zombie or not, is left.
func TestSupervisorAsPID1(t *testing.T) {
	needEngine(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	imgs := testImages(t)
	e := newTestEnv(t)
	root := filepath.Join(e.dir, "root")
	conf := supervisorConf{Config: testConfig(t, e, root), Root: root, Images: imgs, ExtraArgs: e.extra}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(e.dir, "supervisor.json")
	if err := os.WriteFile(confPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--pid", "--fork", "--mount-proc", exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "BERTH_TEST_SUPERVISOR=1", "BERTH_TEST_SUPERVISOR_CONF="+confPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	res := map[string]string{}
	var left []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "RESULT "), "=")
		if !ok || !strings.HasPrefix(sc.Text(), "RESULT ") {
			continue
		}
		if k == "left_process" {
			left = append(left, v)
		}
		res[k] = v
	}
	t.Logf("results: %v", res)
	if err != nil {
		t.Fatalf("supervisor as PID 1: %v\nstdout:\n%s\nstderr (tail):\n%s", err, out, lastLines(stderr.String(), 30))
	}
	for _, k := range []string{"start_err", "shutdown_err", "error"} {
		if res[k] != "" {
			t.Errorf("%s reported; stderr:\n%s", k, lastLines(stderr.String(), 30))
		}
	}
	if ms, err := strconv.Atoi(res["restart_ms"]); err != nil || time.Duration(ms)*time.Millisecond > restartLimit(t, nil) {
		t.Errorf("restart after SIGKILL took %q ms, want within %v", res["restart_ms"], restartLimit(t, nil))
	}
	if res["left"] != "0" {
		t.Errorf("processes left in the namespace after shutdown: %v", left)
	}
	t.Logf("BENCH engines-process RSS while supervising: %s; System Docker start to services started: %s ms; restart after SIGKILL: %s ms; shutdown: %s ms",
		res["rss"], res["started_ms"], res["restart_ms"], res["shutdown_ms"])
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
