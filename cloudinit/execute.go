package cloudinit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthos/berth/internal/atomicfile"
)

// ExecOption configures Execute.
type ExecOption func(*execOptions)

type execOptions struct {
	log            *slog.Logger
	user           string
	kernelHostname *bool
	// chroot is where runcmd and the user-data script run ("" = here).
	chroot string
}

// WithCommandRoot runs runcmd and the user-data script chrooted into dir:
// the host's filesystem seen from the cloud-init-execute container, so
// that commands act on the machine (its files, its docker CLI), as users
// of RancherOS expect, and not on the container's own image.
func WithCommandRoot(dir string) ExecOption {
	return func(o *execOptions) { o.chroot = dir }
}

// command makes an exec.Cmd that runs in o.chroot when one is set.
func (o *execOptions) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	if o.chroot == "" || filepath.Clean(o.chroot) == "/" {
		return cmd
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: o.chroot}
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "PATH="+rootPath, "HOME=/root")
	// exec looked name up in this filesystem; look in the chroot's.
	cmd.Path, cmd.Err = name, nil
	if !strings.Contains(name, "/") {
		cmd.Err = fmt.Errorf("%s: not found in the PATH of %s", name, o.chroot)
		if p, ok := lookPathIn(o.chroot, name); ok {
			cmd.Path, cmd.Err = p, nil
		}
	}
	return cmd
}

// rootPath is the PATH commands get in another root.
const rootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPathIn finds name in rootPath's directories under root, and
// returns its path as seen from root.
func lookPathIn(root, name string) (string, bool) {
	for _, dir := range filepath.SplitList(rootPath) {
		if _, err := os.Lstat(filepath.Join(root, dir, name)); err == nil {
			return filepath.Join(dir, name), true
		}
	}
	return "", false
}

// WithKernelHostname says whether Execute also sets the kernel's hostname
// (default: only when root is "/"). A container sharing the host's UTS
// namespace with the host's / at another root wants true.
func WithKernelHostname(set bool) ExecOption {
	return func(o *execOptions) { o.kernelHostname = &set }
}

// WithLogger sets where Execute logs each step (default slog.Default()).
func WithLogger(l *slog.Logger) ExecOption {
	return func(o *execOptions) { o.log = l }
}

// WithSSHUser sets the user whose authorized_keys receive
// ssh_authorized_keys (default "rancher").
func WithSSHUser(name string) ExecOption {
	return func(o *execOptions) { o.user = name }
}

// Execute applies the parts of cfg that are files and commands, under
// root ("/" on a machine): write_files, ssh_authorized_keys into
// ~rancher/.ssh/authorized_keys, the hostname (/etc/hostname, and the
// kernel's when root is "/"), rancher.sysctl, runcmd, then the user-data
// script saved at ScriptPath. A step that
// fails is logged and the rest still run; the error joins every failure.
func Execute(ctx context.Context, cfg *Config, root string, opts ...ExecOption) error {
	o := execOptions{log: slog.Default(), user: "rancher"}
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	fail := func(err error) {
		if err != nil {
			o.log.Error("cloud-init-execute", "err", err)
			errs = append(errs, err)
		}
	}
	for _, f := range cfg.WriteFiles {
		fail(writeFile(root, f, &o))
	}
	if len(cfg.SSHAuthorizedKeys) > 0 {
		fail(authorizeKeys(root, o.user, cfg.SSHAuthorizedKeys, o.log))
	}
	if cfg.Hostname != "" {
		kernel := filepath.Clean(root) == "/"
		if o.kernelHostname != nil {
			kernel = *o.kernelHostname
		}
		fail(setHostname(root, cfg.Hostname, kernel, o.log))
	}
	for _, k := range sortedKeys(cfg.Rancher.Sysctl) {
		fail(setSysctl(root, k, cfg.Rancher.Sysctl[k], o.log))
	}
	fail(RunCommands(ctx, cfg.Runcmd, WithLogger(o.log), WithCommandRoot(o.chroot)))
	fail(runScript(ctx, root, &o))
	return errors.Join(errs...)
}

// WriteFiles writes cfg's write_files entries under root, the ones for
// a service's container aside (those go into it when it is created): the
// first step of Execute, on its own for PID 1 to run before the network
// comes up. An entry that fails is logged and the rest are still
// written; the error joins every failure.
func WriteFiles(cfg *Config, root string, opts ...ExecOption) error {
	o := execOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	for _, f := range cfg.WriteFiles {
		if err := writeFile(root, f, &o); err != nil {
			o.log.Error("write_files", "path", f.Path, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ScriptPath is where the `#!` script of the user-data is saved; Execute
// runs it last, as RancherOS did.
const ScriptPath = "/var/lib/rancher/conf/cloud-config-script"

func runScript(ctx context.Context, root string, o *execOptions) error {
	path := filepath.Join(root, ScriptPath)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	run := path
	if o.chroot != "" {
		run = filepath.Join("/", strings.TrimPrefix(path, filepath.Clean(o.chroot)))
	}
	cmd := o.command(ctx, run)
	out, err := cmd.CombinedOutput()
	o.log.Info("ran user-data script", "path", path, "output", strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("run user-data script %s: %w", path, err)
	}
	return nil
}

// RunCommands runs runcmd or bootcmd entries in order: a shell line with
// `sh -c`, an argv directly, an empty entry not at all. A failing command
// is logged and the rest still run.
func RunCommands(ctx context.Context, cmds []Command, opts ...ExecOption) error {
	o := execOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	var errs []error
	for i, c := range cmds {
		var cmd *exec.Cmd
		switch {
		case c.Shell != "":
			cmd = o.command(ctx, "sh", "-c", c.Shell)
		case len(c.Argv) > 0:
			cmd = o.command(ctx, c.Argv[0], c.Argv[1:]...)
		default:
			continue
		}
		out, err := cmd.CombinedOutput()
		o.log.Info("run command", "index", i, "cmd", cmd.String(), "output", strings.TrimSpace(string(out)))
		if err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", cmd, err))
		}
	}
	return errors.Join(errs...)
}

// DecodeContent returns a write_files entry's bytes after its encoding.
func DecodeContent(f WriteFile) ([]byte, error) {
	data := []byte(f.Content)
	enc := f.Encoding
	if strings.Contains(enc, "b64") || strings.Contains(enc, "base64") {
		d, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(f.Content), ""))
		if err != nil {
			return nil, fmt.Errorf("decode %s content of %s: %w", enc, f.Path, err)
		}
		data = d
	}
	if strings.HasPrefix(enc, "gz") {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("gunzip content of %s: %w", f.Path, err)
		}
		d, err := io.ReadAll(io.LimitReader(zr, maxUserData+1))
		if err != nil {
			return nil, fmt.Errorf("gunzip content of %s: %w", f.Path, err)
		}
		if len(d) > maxUserData {
			return nil, fmt.Errorf("gunzip content of %s: more than %d bytes", f.Path, maxUserData)
		}
		data = d
	}
	return data, nil
}

func writeFile(root string, f WriteFile, o *execOptions) error {
	data, err := DecodeContent(f)
	if err != nil {
		return err
	}
	if f.Container != "" {
		// The service's container gets it when it is created (TarFiles).
		o.log.Info("write_files: left to the service's container, written into it when it is created", "path", f.Path, "container", f.Container)
		return nil
	}
	perm, err := filePerm(f)
	if err != nil {
		return err
	}
	path := filepath.Join(root, f.Path)
	if err := atomicfile.Write(path, data, perm.Perm()); err != nil {
		return err
	}
	// Chmod again for setuid/setgid/sticky bits, which the write does not set.
	if perm&^0o777 != 0 {
		if err := os.Chmod(path, fileMode(perm)); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	if f.Owner != "" {
		if err := chown(root, path, f.Owner); err != nil {
			return err
		}
	}
	o.log.Info("wrote file", "path", f.Path, "bytes", len(data), "mode", fmt.Sprintf("%04o", perm))
	if perm&0o111 != 0 {
		if interp := missingInterpreter(root, data); interp != "" {
			o.log.Warn("write_files: the script's interpreter is not on this machine; running it fails with \"not found\" (busybox sh is: #!/bin/sh)", "path", f.Path, "interpreter", interp)
		}
	}
	return nil
}

// missingInterpreter is the interpreter of an executable script data
// (`#!/bin/bash`, or bash in `#!/usr/bin/env bash`) when root does not
// have it, else "".
func missingInterpreter(root string, data []byte) string {
	line, ok := bytes.CutPrefix(data, []byte("#!"))
	if !ok {
		return ""
	}
	line, _, _ = bytes.Cut(line, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return ""
	}
	if _, err := os.Stat(filepath.Join(root, fields[0])); err != nil {
		return fields[0]
	}
	if filepath.Base(fields[0]) != "env" || len(fields) < 2 || strings.HasPrefix(fields[1], "-") {
		return ""
	}
	if _, ok := lookPathIn(root, fields[1]); ok {
		return ""
	}
	return fields[1]
}

// filePerm is f's permissions as octal bits (setuid 04000 and the like
// included); 0644 when it has none.
func filePerm(f WriteFile) (os.FileMode, error) {
	if f.Permissions == "" {
		return 0o644, nil
	}
	p, err := strconv.ParseUint(f.Permissions, 8, 32)
	if err != nil || p > 0o7777 {
		return 0, fmt.Errorf("write %s: permissions %q: not an octal mode", f.Path, f.Permissions)
	}
	return os.FileMode(p), nil
}

// fileMode maps the octal 4000/2000/1000 bits onto Go's mode bits.
func fileMode(p os.FileMode) os.FileMode {
	m := p & 0o777
	if p&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if p&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if p&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// chown sets owner "user[:group]" (names from root's /etc/passwd and
// /etc/group, or numbers). Without the privilege to chown it is a no-op
// when the file already has that owner, else an error.
func chown(root, path, owner string) error {
	uid, gid, err := lookupOwner(root, owner)
	if err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, owner, err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		if fi, serr := os.Stat(path); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
				return nil
			}
		}
		return fmt.Errorf("chown %s to %s: %w", path, owner, err)
	}
	return nil
}

// lookupUser finds a user's uid and primary gid in root/etc/passwd; a
// number is taken as it is (gid then equal to it).
func lookupUser(root, name string) (int, int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, n, nil
	}
	var uid, gid = -1, -1
	err := scanDB(filepath.Join(root, "etc/passwd"), func(f []string) bool {
		if len(f) >= 4 && f[0] == name {
			u, err1 := strconv.Atoi(f[2])
			g, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				uid, gid = u, g
				return true
			}
		}
		return false
	})
	if err != nil {
		return 0, 0, err
	}
	if uid < 0 {
		if name == "root" {
			return 0, 0, nil
		}
		return 0, 0, fmt.Errorf("no user %q in /etc/passwd", name)
	}
	return uid, gid, nil
}

func lookupGroup(root, name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	gid := -1
	err := scanDB(filepath.Join(root, "etc/group"), func(f []string) bool {
		if len(f) >= 3 && f[0] == name {
			if g, err := strconv.Atoi(f[2]); err == nil {
				gid = g
				return true
			}
		}
		return false
	})
	if err != nil {
		return 0, err
	}
	if gid < 0 {
		if name == "root" {
			return 0, nil
		}
		return 0, fmt.Errorf("no group %q in /etc/group", name)
	}
	return gid, nil
}

// scanDB calls match with the colon-separated fields of each line of a
// passwd-style file until it returns true. A missing file matches nothing.
func scanDB(path string, match func([]string) bool) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if match(strings.Split(s.Text(), ":")) {
			return nil
		}
	}
	return s.Err()
}

// authorizeKeys adds keys to ~user/.ssh/authorized_keys, keeping the keys
// already there.
func authorizeKeys(root, user string, keys []string, log *slog.Logger) error {
	home := filepath.Join("/home", user)
	uid, gid, uerr := lookupUser(root, user)
	_ = scanDB(filepath.Join(root, "etc/passwd"), func(f []string) bool {
		if len(f) >= 6 && f[0] == user && f[5] != "" {
			home = f[5]
			return true
		}
		return false
	})
	dir := filepath.Join(root, home, ".ssh")
	path := filepath.Join(dir, "authorized_keys")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(old), "\n"), "\n")
	have := map[string]bool{}
	var out []string
	for _, l := range lines {
		if l != "" {
			have[l] = true
			out = append(out, l)
		}
	}
	added := 0
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if k != "" && !have[k] {
			have[k] = true
			out = append(out, k)
			added++
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("authorize ssh keys: %w", err)
	}
	if err := atomicfile.Write(path, []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("authorize ssh keys: %w", err)
	}
	if uerr == nil && os.Geteuid() == 0 {
		for _, p := range []string{dir, path} {
			if err := os.Lchown(p, uid, gid); err != nil {
				return fmt.Errorf("authorize ssh keys: %w", err)
			}
		}
	}
	log.Info("authorized ssh keys", "path", filepath.Join(home, ".ssh/authorized_keys"), "added", added, "total", len(out))
	return nil
}

func setHostname(root, name string, kernel bool, log *slog.Logger) error {
	if err := atomicfile.Write(filepath.Join(root, "etc/hostname"), []byte(name+"\n"), 0o644); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	if kernel {
		if err := syscall.Sethostname([]byte(name)); err != nil {
			return fmt.Errorf("set hostname %s: %w", name, err)
		}
	}
	log.Info("set hostname", "hostname", name)
	return nil
}

func setSysctl(root, key, value string, log *slog.Logger) error {
	if strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
		return fmt.Errorf("sysctl %s: not a sysctl name", key)
	}
	path := filepath.Join(root, "proc/sys", strings.ReplaceAll(key, ".", "/"))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	log.Info("set sysctl", "key", key, "value", value)
	return nil
}
