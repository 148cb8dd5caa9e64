package netconf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Option changes how Apply and Early work.
type Option func(*options)

type options struct {
	root     string
	log      *slog.Logger
	ns       netns.NsHandle
	hostname string
	previous *State
	retrans  time.Duration
	// early: only add (links up, leases), never remove; see Early.
	early bool
	// renewAfter, when set, replaces the lease's T1 (tests).
	renewAfter time.Duration
}

func newOptions(opts []Option) *options {
	o := &options{
		root:    "/",
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		ns:      netns.None(),
		retrans: time.Second,
	}
	for _, f := range opts {
		f(o)
	}
	return o
}

// WithRoot writes /etc/resolv.conf, /etc/hostname, /etc/hosts and the state
// file under dir instead of "/" (default "/"). Only with root "/" is the
// kernel's hostname set.
func WithRoot(dir string) Option { return func(o *options) { o.root = dir } }

// WithLogger logs each change to l (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithNetns configures the links of network namespace ns instead of the
// caller's (default: the caller's). The handle must stay open while the
// State is used.
func WithNetns(ns netns.NsHandle) Option { return func(o *options) { o.ns = ns } }

// WithHostname is the hostname from the config, else from metadata; it
// beats any hostname a DHCP server offers. Empty: use DHCP's, else keep
// the current one.
func WithHostname(name string) Option { return func(o *options) { o.hostname = name } }

// WithPrevious hands over the State of an earlier Apply or Early: its
// leases are kept (not renegotiated) on links that still want DHCP, and
// their renewals continue in the new State's Run. prev must not be used
// after Apply returns.
func WithPrevious(prev *State) Option { return func(o *options) { o.previous = prev } }

// withRenewAfter renews leases d after they are obtained, whatever T1 the
// server gave (tests: dnsmasq's shortest lease is two minutes).
func withRenewAfter(d time.Duration) Option { return func(o *options) { o.renewAfter = d } }

// inNetns runs fn on an OS thread inside the configured namespace, so
// sockets it opens and processes it starts belong there.
func (o *options) inNetns(fn func() error) error {
	if !o.ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(o.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: Go discards it when this goroutine ends.
		return fmt.Errorf("return from netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// runCommands runs each command with /bin/sh -c, in order, inside the
// namespace; the first failure stops the rest.
func (o *options) runCommands(ctx context.Context, what string, cmds []string, env ...string) error {
	for _, c := range cmds {
		o.log.Info("run", "hook", what, "cmd", c)
		err := o.inNetns(func() error {
			cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c)
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			if len(out) > 0 {
				o.log.Info("output", "hook", what, "cmd", c, "output", string(out))
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("%s %q: %w", what, c, err)
		}
	}
	return nil
}

// sysctl writes /proc/sys/<key> inside the namespace (net sysctls belong
// to the namespace of the thread that opens them).
func (o *options) sysctl(key, value string) error {
	return o.inNetns(func() error {
		p := "/proc/sys/" + key
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if strings.TrimSpace(string(b)) == value {
			return nil
		}
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		return nil
	})
}
