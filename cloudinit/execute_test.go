package cloudinit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestExecute(t *testing.T) {
	root := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	writeTestFile(t, filepath.Join(root, "etc/passwd"), fmt.Sprintf("root:x:0:0::/root:/bin/sh\nrancher:x:%d:%d::/home/rancher:/bin/sh\n", uid, gid))
	writeTestFile(t, filepath.Join(root, "etc/group"), fmt.Sprintf("root:x:0:\nrancher:x:%d:\n", gid))
	writeTestFile(t, filepath.Join(root, "home/rancher/.ssh/authorized_keys"), "ssh-ed25519 OLD old@key\n")
	writeTestFile(t, filepath.Join(root, "proc/sys/kernel/domainname"), "(none)\n")
	writeTestFile(t, filepath.Join(root, ScriptPath), "#!/bin/sh\necho script > "+filepath.Join(root, "out-script")+"\n")
	if err := os.Chmod(filepath.Join(root, ScriptPath), 0o700); err != nil {
		t.Fatal(err)
	}

	var gzb bytes.Buffer
	zw := gzip.NewWriter(&gzb)
	zw.Write([]byte("zipped\n"))
	zw.Close()
	gzb64 := base64.StdEncoding.EncodeToString(gzb.Bytes())

	out := filepath.Join(root, "out")
	user := fmt.Sprintf("#cloud-config\nhostname: exec-node\nssh_authorized_keys:\n  - ssh-ed25519 OLD old@key\n  - ssh-ed25519 NEW new@key\n"+
		"write_files:\n"+
		"  - path: /etc/plain\n    content: |\n      hello\n    permissions: \"0755\"\n    owner: rancher:rancher\n"+
		"  - path: /etc/b64\n    encoding: b64\n    content: aGk=\n"+
		"  - path: /etc/gz\n    encoding: gzip+base64\n    content: %s\n"+
		"  - path: /etc/in-console\n    container: console\n    content: c\n"+
		"rancher:\n  sysctl:\n    kernel.domainname: test\n    no.such.key: 1\n"+
		"runcmd:\n  - []\n  - echo shell > %s-shell\n  - [touch, %s-argv]\n  - [false]\n", gzb64, out, out)
	cfg, rep, err := Parse("user-data", []byte(user))
	if err != nil || rep.HasErrors() {
		t.Fatalf("Parse: %v\n%s", err, rep)
	}
	var logs bytes.Buffer
	err = Execute(context.Background(), cfg, root, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err == nil {
		t.Error("Execute = nil, want the errors of the missing sysctl and `false`")
	} else {
		for _, want := range []string{"no/such/key", "false"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Execute error %q lacks %q", err, want)
			}
		}
	}
	files := []struct{ path, want string }{
		{"etc/plain", "hello\n"},
		{"etc/b64", "hi"},
		{"etc/gz", "zipped\n"},
		{"etc/hostname", "exec-node\n"},
		{"home/rancher/.ssh/authorized_keys", "ssh-ed25519 OLD old@key\nssh-ed25519 NEW new@key\n"},
		{"proc/sys/kernel/domainname", "test"},
		{"out-shell", "shell\n"},
		{"out-argv", ""},
		{"out-script", "script\n"},
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(root, f.path))
		if err != nil || string(got) != f.want {
			t.Errorf("%s = %q, %v; want %q", f.path, got, err, f.want)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/plain")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("etc/plain mode = %v, %v; want 0755", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(root, "home/rancher/.ssh/authorized_keys")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("authorized_keys mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/in-console")); err == nil {
		t.Error("a container: entry was written to the host")
	}
}

func TestExecuteLeavesContainerFiles(t *testing.T) {
	root := t.TempDir()
	cfg := &Config{WriteFiles: []WriteFile{{Path: "/x", Container: "ntp", Content: "c"}}}
	var logs bytes.Buffer
	if err := Execute(context.Background(), cfg, root, WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if !strings.Contains(logs.String(), "left to the service's container") {
		t.Errorf("no log line for the entry left to the container: %s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(root, "x")); err == nil {
		t.Error("a container: entry was written to the host")
	}
}

// TestWriteFiles is PID 1's write before the network: the host's entries
// are written with their mode, a container's is not, a broken entry is
// named in the error and does not keep the ones after it from being
// written, and nothing else of the config (hostname, runcmd) is applied.
func TestWriteFiles(t *testing.T) {
	root := t.TempDir()
	cfg := &Config{
		Hostname: "not-this-step",
		Runcmd:   []Command{{Shell: "touch " + filepath.Join(root, "ran")}},
		WriteFiles: []WriteFile{
			{Path: "/var/lib/hooks/up.sh", Content: "#!/bin/sh\necho up\n", Permissions: "0755"},
			{Path: "/etc/broken", Encoding: "b64", Content: "%%%"},
			{Path: "/etc/in-ntp", Container: "ntp", Content: "c"},
			{Path: "/etc/after-broken", Content: "still\n"},
		},
	}
	err := WriteFiles(cfg, root, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err == nil || !strings.Contains(err.Error(), "/etc/broken") {
		t.Errorf("WriteFiles error = %v, want one naming /etc/broken", err)
	}
	fi, err := os.Stat(filepath.Join(root, "var/lib/hooks/up.sh"))
	if err != nil {
		t.Fatalf("the hook script was not written: %v", err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("up.sh mode = %v, want 0755", fi.Mode().Perm())
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/after-broken")); err != nil || string(b) != "still\n" {
		t.Errorf("the entry after the broken one = %q, %v; want it written", b, err)
	}
	for _, p := range []string{"etc/in-ntp", "etc/broken", "etc/hostname", "ran"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s exists; WriteFiles wrote more than the host's write_files", p)
		}
	}
}

func TestRunCommandsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := RunCommands(ctx, []Command{{Shell: "sleep 5"}}, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err == nil {
		t.Error("RunCommands with a cancelled context = nil, want an error")
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExecuteCommandRoot runs runcmd and the user-data script chrooted
// into root, as the cloud-init-execute service does with the host's / at
// /host: what they write lands in root, not in the caller's filesystem.
func TestExecuteCommandRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs a static busybox as the chroot's /bin/sh (apt-get install busybox-static)")
	}
	root := t.TempDir()
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(root, "bin/busybox"), string(data))
	if err := os.Chmod(filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(root, ScriptPath), "#!/bin/sh\necho script-ran > /script-out\n")
	if err := os.Chmod(filepath.Join(root, ScriptPath), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Runcmd: []Command{{Shell: "echo runcmd-ran > /runcmd-out; pwd > /runcmd-pwd"}}}
	if err := Execute(context.Background(), cfg, root, WithCommandRoot(root), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	for f, want := range map[string]string{"runcmd-out": "runcmd-ran\n", "runcmd-pwd": "/\n", "script-out": "script-ran\n"} {
		got, err := os.ReadFile(filepath.Join(root, f))
		if err != nil || string(got) != want {
			t.Errorf("%s in the root = %q, %v; want %q", f, got, err, want)
		}
		if _, err := os.Stat("/" + f); err == nil {
			t.Errorf("/%s was written outside the root", f)
		}
	}
}

// TestTarFiles: the write_files entries for one service become the tar
// that PID 1 uploads into its container: decoded content, the mode and
// owner asked for (names from the root's passwd and group), paths made
// relative; a bad entry is an error naming it.
func TestTarFiles(t *testing.T) {
	root := t.TempDir()
	writeTestFile(t, filepath.Join(root, "etc/passwd"), "root:x:0:0::/root:/bin/sh\nrancher:x:1100:1100::/home/rancher:/bin/sh\n")
	writeTestFile(t, filepath.Join(root, "etc/group"), "root:x:0:\ndocker:x:1101:rancher\n")
	cfg := &Config{WriteFiles: []WriteFile{
		{Path: "/host-file", Content: "host"},
		{Path: "/etc/ntp.conf", Container: "ntp", Content: "server 192.0.2.1\n", Permissions: "0600", Owner: "rancher:docker"},
		{Path: "/test", Container: "console", Content: "console"},
		{Path: "/usr/bin/hook", Container: "ntp", Content: "H4sIAAAAAAAAA8tIzcnJBwCGphA2BQAAAA==", Encoding: "gz+b64", Permissions: "4755"},
	}}
	files := ContainerFiles(cfg, "ntp")
	if len(files) != 2 || files[0].Path != "/etc/ntp.conf" || files[1].Path != "/usr/bin/hook" {
		t.Fatalf("ContainerFiles(ntp) = %+v, want its two entries in order", files)
	}
	var buf bytes.Buffer
	mtime := time.Unix(1700000000, 0)
	if err := TarFiles(&buf, files, root, mtime); err != nil {
		t.Fatalf("TarFiles: %v", err)
	}
	type got struct {
		mode     int64
		uid, gid int
		data     string
	}
	all := map[string]got{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if !h.ModTime.Equal(mtime) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
		all[h.Name] = got{h.Mode, h.Uid, h.Gid, string(b)}
	}
	want := map[string]got{
		"etc/ntp.conf": {0o600, 1100, 1101, "server 192.0.2.1\n"},
		"usr/bin/hook": {0o4755, 0, 0, "hello"},
	}
	if diff := cmp.Diff(want, all, cmp.AllowUnexported(got{})); diff != "" {
		t.Errorf("tar (-want +got):\n%s", diff)
	}
	for _, bad := range []WriteFile{
		{Path: "/x", Content: "!!", Encoding: "b64"},
		{Path: "/x", Owner: "nobody-here"},
		{Path: "/x", Permissions: "0999"},
		{Path: "/", Content: "dir"},
	} {
		var b bytes.Buffer
		if err := TarFiles(&b, []WriteFile{bad}, root, mtime); err == nil || b.Len() != 0 {
			t.Errorf("TarFiles(%+v) = %v with %d bytes, want an error and nothing written", bad, err, b.Len())
		}
	}
}

// An executable script whose interpreter the machine lacks (RancherOS's
// hook scripts say #!/bin/bash; Berth's host has busybox sh) is written
// and warned of with its path and interpreter; others are not.
func TestWriteFilesMissingInterpreter(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"bin/sh", "usr/bin/env"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &Config{WriteFiles: []WriteFile{
		{Path: "/opt/bash.sh", Content: "#!/bin/bash\nset -ex\n", Permissions: "0755"},
		{Path: "/opt/env-bash.sh", Content: "#!/usr/bin/env bash\n", Permissions: "0755"},
		{Path: "/opt/sh.sh", Content: "#!/bin/sh -e\necho\n", Permissions: "0755"},
		{Path: "/opt/env-sh.sh", Content: "#!/usr/bin/env sh\n", Permissions: "0700"},
		{Path: "/opt/not-executable", Content: "#!/bin/bash\n"},
		{Path: "/opt/data", Content: "no script\n", Permissions: "0755"},
	}}
	var log bytes.Buffer
	if err := WriteFiles(cfg, root, WithLogger(slog.New(slog.NewTextHandler(&log, nil)))); err != nil {
		t.Fatal(err)
	}
	var warned []string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "level=WARN") {
			warned = append(warned, l)
		}
	}
	if len(warned) != 2 || !strings.Contains(warned[0], "path=/opt/bash.sh interpreter=/bin/bash") || !strings.Contains(warned[1], "path=/opt/env-bash.sh interpreter=bash") {
		t.Errorf("warnings:\n%s\nwant one for /opt/bash.sh (/bin/bash) and one for /opt/env-bash.sh (bash)", strings.Join(warned, "\n"))
	}
	if _, err := os.Stat(filepath.Join(root, "opt/bash.sh")); err != nil {
		t.Errorf("the script with a missing interpreter was not written: %v", err)
	}
}
