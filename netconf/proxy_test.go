package netconf

import (
	"net/http"
	"strings"
	"testing"
)

func TestProxy(t *testing.T) {
	c := Config{
		HTTPProxy:  "http://192.0.2.3:3128",
		HTTPSProxy: "198.51.100.4:3129", // no scheme: http://, as curl reads it
		NoProxy:    "localhost,.internal.example,203.0.113.0/24,config.example.org",
	}
	proxy, err := c.Proxy()
	if err != nil || proxy == nil {
		t.Fatalf("Proxy() = %v, %v; want a function", proxy, err)
	}
	for _, tc := range []struct{ url, want string }{
		{"http://config.example.com/user-data", "http://192.0.2.3:3128"},
		{"https://config.example.com/user-data", "http://198.51.100.4:3129"},
		{"http://a.internal.example/x", ""},
		{"http://config.example.org/x", ""},
		{"http://sub.config.example.org/x", ""},
		{"http://203.0.113.9/x", ""},
		{"http://localhost:8080/x", ""},
		{"http://127.0.0.1/x", ""},
		{"http://169.254.169.254/latest/user-data", ""},
		{"http://[fe80::1]/x", ""},
		{"http://192.0.2.80/x", "http://192.0.2.3:3128"},
	} {
		req, err := http.NewRequest(http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		u, err := proxy(req)
		got := ""
		if u != nil {
			got = u.String()
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: proxy %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}

	// Only http_proxy: an https URL goes direct (no fallback), as curl and
	// Go's own environment proxies do.
	proxy, err = Config{HTTPProxy: "http://192.0.2.3:3128"}.Proxy()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://config.example.com/", nil)
	if u, err := proxy(req); u != nil || err != nil {
		t.Errorf("https with only http_proxy: %v, %v; want direct", u, err)
	}

	if p, err := (Config{NoProxy: "localhost"}).Proxy(); p != nil || err != nil {
		t.Errorf("no proxy set: %v, %v; want nil, nil", p, err)
	}
	for _, bad := range []struct {
		c   Config
		key string
	}{
		{Config{HTTPProxy: "ftp://192.0.2.3"}, "rancher.network.http_proxy"},
		{Config{HTTPSProxy: "http://"}, "rancher.network.https_proxy"},
		{Config{HTTPProxy: "http://192.0.2.3:3128", HTTPSProxy: "http://a b:1"}, "rancher.network.https_proxy"},
	} {
		p, err := bad.c.Proxy()
		if err == nil || p != nil || !strings.HasPrefix(err.Error(), bad.key+": ") {
			t.Errorf("%+v: %v, %v; want an error naming %s", bad.c, p, err, bad.key)
		}
	}
}

func TestProxySummaryHidesPasswords(t *testing.T) {
	got := Config{HTTPProxy: "http://berth:s3cret@192.0.2.3:3128", NoProxy: "localhost"}.ProxySummary()
	if want := "http_proxy=http://berth:xxxxx@192.0.2.3:3128 no_proxy=localhost"; got != want {
		t.Errorf("ProxySummary() = %q, want %q", got, want)
	}
}
