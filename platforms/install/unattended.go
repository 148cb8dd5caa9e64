package install

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/berthos/berth/netconf"
)

// Unattended is an install asked for on the kernel command line, for image
// pipelines (Packer): rancher.install.device=/dev/vda, and optionally
// rancher.install.cloud_config_url=URL, rancher.install.type=PLATFORM,
// rancher.install.append="ARGS", rancher.install.force.
type Unattended struct {
	Device         string
	CloudConfigURL string
	Platform       Platform
	Append         string
	Force          bool
}

// ParseUnattended reads the rancher.install.* keys of a kernel command
// line; ok is false when no install device is named.
func ParseUnattended(cmdline string) (u Unattended, ok bool, err error) {
	u.Platform = Generic
	for _, arg := range splitCmdline(cmdline) {
		key, val, _ := strings.Cut(arg, "=")
		switch key {
		case "rancher.install.device":
			u.Device = val
		case "rancher.install.cloud_config_url":
			u.CloudConfigURL = val
		case "rancher.install.type":
			if u.Platform, err = ParsePlatform(val); err != nil {
				return u, false, fmt.Errorf("rancher.install.type: %w", err)
			}
		case "rancher.install.append":
			u.Append = val
		case "rancher.install.force":
			u.Force = val == "" || val == "true" || val == "1"
		}
	}
	return u, u.Device != "", nil
}

// splitCmdline splits on spaces outside double quotes and drops the quotes.
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, any := false, false
	for i := 0; i < len(s); i++ { // bytes: the command line need not be UTF-8
		r := s[i]
		switch {
		case r == '"':
			quoted, any = !quoted, true
		case (r == ' ' || r == '\t' || r == '\n') && !quoted:
			if any {
				out = append(out, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteByte(r)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

// FetchCloudConfig gets the cloud-config of an unattended install (http,
// https or file URL, or a path) into dst. An http(s) URL is fetched
// through proxy when it is not nil (netconf.Config.Proxy), else as
// http.DefaultClient does (HTTP_PROXY and the like from the environment).
func FetchCloudConfig(ctx context.Context, src, dst string, proxy func(*http.Request) (*url.URL, error)) error {
	u, err := url.Parse(src)
	if err != nil {
		return fmt.Errorf("fetch cloud-config %s: %w", src, err)
	}
	var body io.ReadCloser
	switch u.Scheme {
	case "http", "https":
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return fmt.Errorf("fetch cloud-config %s: %w", src, err)
		}
		resp, err := netconf.ProxyClient(proxy).Do(req)
		if err != nil {
			return fmt.Errorf("fetch cloud-config %s: %w", src, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("fetch cloud-config %s: %s", src, resp.Status)
		}
		body = resp.Body
	case "file", "":
		p := u.Path
		if u.Scheme == "" {
			p = src
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("fetch cloud-config: %w", err)
		}
		body = f
	default:
		return fmt.Errorf("fetch cloud-config %s: unsupported scheme %q", src, u.Scheme)
	}
	defer body.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("fetch cloud-config: %w", err)
	}
	if _, err := io.Copy(out, io.LimitReader(body, 16<<20)); err != nil {
		out.Close()
		return fmt.Errorf("fetch cloud-config %s: %w", src, err)
	}
	return out.Close()
}
