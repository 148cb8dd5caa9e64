// Package datasources decides where a Berth machine's user-data and
// metadata come from: it builds the listed sources (an explicit switch on
// the name), identifies the platform passively, runs every plausible
// source at once under one time budget while honouring list order as
// priority, records why each source was used or not, and saves the
// winner's answer as RancherOS's cloud-init-save did.
package datasources

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/berthos/berth/cloudinit"
	"github.com/berthos/berth/datasources/cmdline"
	"github.com/berthos/berth/datasources/configdrive"
	"github.com/berthos/berth/datasources/ec2"
	"github.com/berthos/berth/datasources/file"
	"github.com/berthos/berth/datasources/gce"
	"github.com/berthos/berth/datasources/openstack"
	"github.com/berthos/berth/datasources/source"
	"github.com/berthos/berth/datasources/url"
	"github.com/berthos/berth/netconf"
)

// Defaults for the run.
const (
	DefaultBudget = 60 * time.Second
	// DefaultNetworkTimeout and DefaultLocalTimeout bound one source; the
	// budget bounds them all.
	DefaultNetworkTimeout = 30 * time.Second
	DefaultLocalTimeout   = 10 * time.Second
	// grace is how long the runner waits for cancelled sources to return
	// before it stops waiting for them.
	grace = 200 * time.Millisecond
)

// Kinds are the source types a list may name, in the order `*` expands
// them (the identified platform's own network source is moved first among
// the network sources).
var kinds = []string{"cmdline", "configdrive", "ec2", "gce", "openstack", "url", "file"}

// Kinds returns the source types a list may name.
func Kinds() []string { return slices.Clone(kinds) }

type config struct {
	root         string
	budget       time.Duration
	netTimeout   time.Duration
	localTimeout time.Duration
	client       *http.Client
	proxy        netconf.ProxyFunc
	ec2Endpoint  string
	gceEndpoint  string
	osEndpoint   string
	imdsv1       bool
	platform     *Platform
	sources      []source.Datasource
	now          func() time.Time
}

// Option configures Run and Sources.
type Option func(*config)

// WithRoot reads /sys, /dev, /proc and file: paths under dir (default "/").
func WithRoot(dir string) Option { return func(c *config) { c.root = dir } }

// WithBudget bounds the whole run (default 60 s, `rancher.cloud_init.timeout`).
func WithBudget(d time.Duration) Option { return func(c *config) { c.budget = d } }

// WithSourceTimeout bounds each source (default 30 s for network sources,
// 10 s for local ones; never more than the budget).
func WithSourceTimeout(d time.Duration) Option {
	return func(c *config) { c.netTimeout, c.localTimeout = d, d }
}

// WithHTTPClient sets the client of every network source.
func WithHTTPClient(h *http.Client) Option { return func(c *config) { c.client = h } }

// WithProxy sends the fetches of a URL the config names (cmdline's
// cloud-config-url, url:) through proxy (netconf.Config.Proxy). The
// metadata services (ec2, gce, openstack) answer on link-local addresses
// and are always reached direct.
func WithProxy(proxy netconf.ProxyFunc) Option { return func(c *config) { c.proxy = proxy } }

// WithEndpoint points one network source ("ec2", "gce", "openstack") at
// base URL u instead of its environment variable or 169.254.169.254.
func WithEndpoint(kind, u string) Option {
	return func(c *config) {
		switch kind {
		case "ec2":
			c.ec2Endpoint = u
		case "gce":
			c.gceEndpoint = u
		case "openstack":
			c.osEndpoint = u
		}
	}
}

// WithIMDSv1 allows (default) or forbids EC2's token-less fallback.
func WithIMDSv1(allow bool) Option { return func(c *config) { c.imdsv1 = allow } }

// WithPlatform replaces passive identification (tests).
func WithPlatform(p Platform) Option { return func(c *config) { c.platform = &p } }

// WithSources runs these sources instead of building them from the list
// (tests; the list is then ignored).
func WithSources(s ...source.Datasource) Option { return func(c *config) { c.sources = s } }

func newConfig(opts []Option) *config {
	c := &config{root: "/", budget: DefaultBudget, netTimeout: DefaultNetworkTimeout,
		localTimeout: DefaultLocalTimeout, imdsv1: true, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	if c.budget <= 0 {
		c.budget = DefaultBudget
	}
	return c
}

// Expand replaces `*` by every source kind this platform can have and
// drops duplicates, keeping the first.
func Expand(list []string, p Platform) []string {
	var out []string
	for _, e := range list {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if e != "*" {
			if !slices.Contains(out, e) {
				out = append(out, e)
			}
			continue
		}
		all := []string{"cmdline", "configdrive"}
		if p.Cloud != "" {
			all = append(all, p.Cloud)
		}
		all = append(all, "ec2", "gce", "openstack")
		for _, k := range all {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// Sources builds the sources a list names, in order. An unknown type is an
// error naming it.
func Sources(list []string, opts ...Option) ([]source.Datasource, error) {
	c := newConfig(opts)
	return c.build(list)
}

func (c *config) build(list []string) ([]source.Datasource, error) {
	var out []source.Datasource
	for _, e := range list {
		kind, arg, _ := strings.Cut(e, ":")
		var s source.Datasource
		switch kind {
		case "ec2":
			o := []ec2.Option{ec2.WithIMDSv1(c.imdsv1)}
			if c.ec2Endpoint != "" {
				o = append(o, ec2.WithEndpoint(c.ec2Endpoint))
			}
			if c.client != nil {
				o = append(o, ec2.WithHTTPClient(c.client))
			}
			s = ec2.New(o...)
		case "gce":
			var o []gce.Option
			if c.gceEndpoint != "" {
				o = append(o, gce.WithEndpoint(c.gceEndpoint))
			}
			if c.client != nil {
				o = append(o, gce.WithHTTPClient(c.client))
			}
			s = gce.New(o...)
		case "openstack":
			var o []openstack.Option
			if c.osEndpoint != "" {
				o = append(o, openstack.WithEndpoint(c.osEndpoint))
			}
			if c.client != nil {
				o = append(o, openstack.WithHTTPClient(c.client))
			}
			s = openstack.New(o...)
		case "configdrive":
			o := []configdrive.Option{configdrive.WithRoot(c.root)}
			if arg != "" {
				o = append(o, configdrive.WithDevice(arg))
			}
			s = configdrive.New(o...)
		case "cmdline":
			o := []cmdline.Option{cmdline.WithRoot(c.root)}
			if hc := c.urlClient(); hc != nil {
				o = append(o, cmdline.WithHTTPClient(hc))
			}
			s = cmdline.New(o...)
		case "url":
			var o []url.Option
			if hc := c.urlClient(); hc != nil {
				o = append(o, url.WithHTTPClient(hc))
			}
			s = url.New(arg, o...)
		case "file":
			s = file.New(arg, file.WithRoot(c.root))
		default:
			return nil, fmt.Errorf("datasource %q: unknown type %q (known: %s)", e, kind, strings.Join(kinds, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// urlClient is the client of the sources that fetch a URL the config
// names: the one WithHTTPClient gave (nil for http.DefaultClient), its
// transport's proxy replaced by WithProxy's.
func (c *config) urlClient() *http.Client {
	if c.proxy == nil {
		return c.client
	}
	hc := &http.Client{}
	rt := http.DefaultTransport
	if c.client != nil {
		*hc = *c.client
		if c.client.Transport != nil {
			rt = c.client.Transport
		}
	}
	t, ok := rt.(*http.Transport)
	if !ok {
		return c.client // a transport of its own (tests) decides itself
	}
	t = t.Clone()
	t.Proxy = c.proxy
	hc.Transport = t
	return hc
}

// kindOf is the type part of a source name ("configdrive:/dev/sr0" -> "configdrive").
func kindOf(name string) string {
	k, _, _ := strings.Cut(name, ":")
	return k
}

// ConfigOptions turns `rancher.cloud_init` into run options: the budget
// (timeout, seconds) and whether EC2 may fall back to IMDSv1.
func ConfigOptions(ci cloudinit.CloudInit) []Option {
	var o []Option
	if ci.Timeout > 0 {
		o = append(o, WithBudget(time.Duration(ci.Timeout)*time.Second))
	}
	if ci.EC2.IMDSv1 != nil {
		o = append(o, WithIMDSv1(*ci.EC2.IMDSv1))
	}
	return o
}

// NeedsNetwork reports whether any source the list names (`*` counting as
// every network source) needs the network, so the boot knows whether to
// bring up a temporary lease before Run.
func NeedsNetwork(list []string) bool {
	for _, e := range list {
		switch kindOf(strings.TrimSpace(e)) {
		case "*", "ec2", "gce", "openstack", "url", "cmdline":
			// cmdline may name a cloud-config-url.
			return true
		}
	}
	return false
}
