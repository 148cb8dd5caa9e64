package install

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
)

// Request is one install as `ros install` or the kernel command line
// (rancher.install.*) asks for it: what Prepare turns into a Plan.
type Request struct {
	Device   string
	Platform Platform // "" is Generic
	Append   string   // extra kernel arguments for the installed system
	// CloudConfig is a file, or a URL (http, https, file) fetched with
	// FetchCloudConfig; "" for none.
	CloudConfig string
	// Proxy, when not nil, is how an http(s) CloudConfig is fetched
	// (rancher.network's proxies; netconf.Config.Proxy).
	Proxy func(*http.Request) (*url.URL, error)
	// Force installs over a mounted or non-empty device (no Check).
	Force bool
	// Kernel, Initrd and SystemImage are the files to install (the
	// SystemImage "" when the initrd holds it); when Kernel or Initrd
	// is "" all three come from ISO, else from FindSources under Root
	// or the CD-ROMs.
	Kernel, Initrd, SystemImage string
	ISO                         string
	Root                        string   // where FindSources looks for /boot ("" is /)
	CDROMs                      []string // Berth ISOs FindSources tries (default /dev/sr0, /dev/sr1)
}

// NeedsNetwork says whether the request fetches its cloud-config over
// the network.
func (r Request) NeedsNetwork() bool {
	s := urlScheme(r.CloudConfig)
	return s == "http" || s == "https"
}

// urlScheme is s's URL scheme ("" for a plain path or a bad URL).
func urlScheme(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Scheme
}

// Request is the install u asks for; root is where FindSources looks for
// the kernel and initrd to install.
func (u Unattended) Request(root string) Request {
	return Request{Device: u.Device, Platform: u.Platform, Append: u.Append, CloudConfig: u.CloudConfigURL, Force: u.Force, Root: root}
}

// Prepare checks req and plans it, in the order that fails soonest and
// writes nothing: the platform, the cloud-config (fetched into dir when it
// is a URL), the device's size, Check (unless req.Force), then the kernel,
// initrd and system image (extracted from an ISO into dir when needed). Errors from
// Check wrap ErrRefused.
func Prepare(ctx context.Context, req Request, dir string) (*Plan, error) {
	platform, err := ParsePlatform(string(req.Platform))
	if err != nil {
		return nil, err
	}
	cc := req.CloudConfig
	switch scheme := urlScheme(cc); {
	case cc == "":
	case req.NeedsNetwork() || scheme == "file":
		cc = filepath.Join(dir, "cloud-config.yml")
		if err := FetchCloudConfig(ctx, req.CloudConfig, cc, req.Proxy); err != nil {
			return nil, err
		}
	default:
		if _, err := os.Stat(cc); err != nil {
			return nil, fmt.Errorf("cloud-config: %w", err)
		}
	}
	size, err := DeviceSize(req.Device)
	if err != nil {
		return nil, err
	}
	if !req.Force {
		if err := Check(req.Device, ""); err != nil {
			return nil, err
		}
	}
	src := Sources{Kernel: req.Kernel, Initrd: req.Initrd, SystemImage: req.SystemImage}
	switch {
	case req.ISO != "":
		src, err = FromISO(req.ISO, dir)
	case src.Kernel == "" || src.Initrd == "":
		root, cds := req.Root, req.CDROMs
		if root == "" {
			root = "/"
		}
		if len(cds) == 0 {
			cds = []string{"/dev/sr0", "/dev/sr1"}
		}
		src, err = FindSources(root, dir, cds...)
	}
	if err != nil {
		return nil, err
	}
	return NewPlan(req.Device, size,
		WithPlatform(platform), WithAppend(req.Append),
		WithKernel(src.Kernel), WithInitrd(src.Initrd), WithSystemImage(src.SystemImage), WithCloudConfig(cc))
}

// Run is every install: Prepare, the plan on out, confirm (when not nil;
// its error is returned as it is and nothing is written), then Install
// with each step on progress. `ros install`, `ros install --from-cmdline`
// and PID 1's unattended install all come here.
func Run(ctx context.Context, req Request, out, progress io.Writer, confirm func(*Plan) error) error {
	dir, err := os.MkdirTemp("", "berth-install-src-")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer os.RemoveAll(dir)
	plan, err := Prepare(ctx, req, dir)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	fmt.Fprint(out, plan)
	if confirm != nil {
		if err := confirm(plan); err != nil {
			return err
		}
	}
	return Install(ctx, plan, WithProgress(progress))
}
