package netconf

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// ProxyFunc picks the proxy of a request, as http.Transport.Proxy does:
// nil means direct.
type ProxyFunc = func(*http.Request) (*url.URL, error)

// Proxy is how Berth's own fetches of a URL the config names (a
// cloud-config-url, a url: datasource, an unattended install's
// cloud-config) reach it: through https_proxy for https URLs and
// http_proxy for http ones, direct for the hosts no_proxy names (names,
// suffixes, addresses, CIDRs, `*`), for loopback and for link-local
// addresses, where metadata services answer. It is nil when neither
// proxy is set, and an error names a key whose value is not a proxy URL
// (a missing scheme means http://, as curl reads it).
func (c Config) Proxy() (ProxyFunc, error) {
	if c.HTTPProxy == "" && c.HTTPSProxy == "" {
		return nil, nil
	}
	for _, kv := range [][2]string{{"http_proxy", c.HTTPProxy}, {"https_proxy", c.HTTPSProxy}} {
		if kv[1] == "" {
			continue
		}
		if err := checkProxyURL(kv[1]); err != nil {
			return nil, fmt.Errorf("rancher.network.%s: %w", kv[0], err)
		}
	}
	pick := (&httpproxy.Config{HTTPProxy: c.HTTPProxy, HTTPSProxy: c.HTTPSProxy, NoProxy: c.NoProxy}).ProxyFunc()
	return func(r *http.Request) (*url.URL, error) {
		if a, err := netip.ParseAddr(r.URL.Hostname()); err == nil && a.IsLinkLocalUnicast() {
			return nil, nil
		}
		return pick(r.URL)
	}, nil
}

// ProxyClient is an HTTP client whose requests go through proxy: a copy
// of http.DefaultTransport's settings with its Proxy, or
// http.DefaultClient when proxy is nil.
func ProxyClient(proxy ProxyFunc) *http.Client {
	if proxy == nil {
		return http.DefaultClient
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = proxy
	return &http.Client{Transport: t}
}

// checkProxyURL accepts what httpproxy uses: a URL with a host, its
// scheme http, https or socks5, or host:port alone.
func checkProxyURL(s string) error {
	full := s
	if !strings.Contains(s, "://") {
		full = "http://" + s
	}
	u, err := url.Parse(full)
	if err != nil {
		return fmt.Errorf("%q is not a proxy URL: %w", s, err)
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return fmt.Errorf("%q: proxy scheme %q is not http, https or socks5", s, u.Scheme)
	}
	h := u.Hostname()
	if h == "" {
		return fmt.Errorf("%q is not a proxy URL: no host", s)
	}
	if _, err := netip.ParseAddr(h); err != nil && strings.ContainsFunc(h, notNameChar) {
		return fmt.Errorf("%q is not a proxy URL: host %q is neither an address nor a name", s, h)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q is not a proxy URL: port %q", s, p)
		}
	}
	return nil
}

// ProxySummary is the proxy keys that are set, for a log line: a
// password in a proxy URL shows as xxxxx.
func (c Config) ProxySummary() string {
	var s []string
	for _, kv := range [][2]string{{"http_proxy", c.HTTPProxy}, {"https_proxy", c.HTTPSProxy}, {"no_proxy", c.NoProxy}} {
		if kv[1] == "" {
			continue
		}
		v := kv[1]
		if u, err := url.Parse(v); err == nil && u.User != nil {
			v = u.Redacted()
		}
		s = append(s, kv[0]+"="+v)
	}
	return strings.Join(s, " ")
}

// notNameChar reports whether r cannot be in a host name.
func notNameChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
}
