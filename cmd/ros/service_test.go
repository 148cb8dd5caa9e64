package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs ros with args and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	code := 0
	if err := root.Execute(); err != nil {
		errb.WriteString(err.Error())
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

func serviceLine(list, name string) string {
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return strings.Join(f, " ")
		}
	}
	return ""
}

func TestServiceEnableDisableList(t *testing.T) {
	dir := t.TempDir()
	// No System Docker socket under dir: states read "missing".
	out, _, code := runCLI(t, "--root", dir, "service", "list")
	if code != 0 {
		t.Fatalf("service list exit %d", code)
	}
	for _, want := range []string{"acpid system-docker false -", "console system-docker true missing", "docker system-docker true missing"} {
		if got := serviceLine(out, strings.Fields(want)[0]); !strings.HasPrefix(got, want) {
			t.Errorf("service list line = %q, want prefix %q\n%s", got, want, out)
		}
	}
	steps := []struct {
		args []string
		name string
		want string
	}{
		{[]string{"service", "enable", "acpid"}, "acpid", "acpid system-docker true"},
		{[]string{"service", "disable", "ntp"}, "ntp", "ntp system-docker false"},
		{[]string{"service", "disable", "acpid"}, "acpid", "acpid system-docker false"},
	}
	for _, st := range steps {
		t.Run(strings.Join(st.args, " "), func(t *testing.T) {
			if _, errs, code := runCLI(t, append([]string{"--root", dir}, st.args...)...); code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			out, _, _ := runCLI(t, "--root", dir, "service", "list")
			if got := serviceLine(out, st.name); !strings.HasPrefix(got, st.want) {
				t.Errorf("after %v: %q, want prefix %q", st.args, got, st.want)
			}
		})
	}
	if _, errs, code := runCLI(t, "--root", dir, "service", "enable", "nosuch"); code != 2 || !strings.Contains(errs, `no service named "nosuch"`) {
		t.Errorf("enable nosuch: exit %d, %q; want exit 2 naming it", code, errs)
	}
}

// nodeExporter is a services file of one service, node-exporter.
const nodeExporter = "node-exporter:\n  image: prom/node-exporter\n  net: host\n"

// filesServer serves files by path, and 404 for everything else.
func filesServer(t *testing.T, files map[string]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(f))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestServiceEnableURL: enabling a services file's URL fetches it, and
// its services are listed; one that cannot be fetched is refused and
// changes nothing.
func TestServiceEnableURL(t *testing.T) {
	srv := filesServer(t, map[string]string{"/monitoring.yml": nodeExporter})
	dir := t.TempDir()
	u := srv.URL + "/monitoring.yml"
	out, errs, code := runCLI(t, "--root", dir, "service", "enable", u)
	if code != 0 || !strings.Contains(out, "fetched "+u+": 1 services") {
		t.Fatalf("enable %s: exit %d: %q %q", u, code, out, errs)
	}
	out, _, _ = runCLI(t, "--root", dir, "service", "list")
	if got := serviceLine(out, "node-exporter"); !strings.HasPrefix(got, "node-exporter system-docker true") {
		t.Errorf("service list: %q, want node-exporter enabled\n%s", got, out)
	}
	missing := srv.URL + "/missing.yml"
	if _, errs, code := runCLI(t, "--root", dir, "service", "enable", missing); code != 1 || !strings.Contains(errs, missing) {
		t.Errorf("enable %s: exit %d, %q; want exit 1 naming it", missing, code, errs)
	}
	if local, _ := os.ReadFile(filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml")); strings.Contains(string(local), "missing.yml") {
		t.Errorf("a URL that could not be fetched is in the local config:\n%s", local)
	}
	if _, errs, code := runCLI(t, "--root", dir, "service", "disable", u); code != 0 {
		t.Fatalf("disable %s: exit %d: %s", u, code, errs)
	}
	out, _, _ = runCLI(t, "--root", dir, "service", "list")
	if got := serviceLine(out, "node-exporter"); got != "" {
		t.Errorf("after disable, service list still has %q", got)
	}
}

// TestServiceEnableFromRepository: enabling a name no source defines
// looks it up in rancher.repositories (URL/n/name.yml), fetches it and
// lists its services; a name no repository has is refused and changes
// nothing; without a repository such a name is unknown (exit 2).
func TestServiceEnableFromRepository(t *testing.T) {
	srv := filesServer(t, map[string]string{
		"/repo/n/node-exporter.yml": nodeExporter,
		"/repo/index.yml":           "services: [node-exporter, console]\n",
	})
	dir := t.TempDir()
	if _, errs, code := runCLI(t, "--root", dir, "service", "enable", "node-exporter"); code != 2 || !strings.Contains(errs, "rancher.repositories") {
		t.Errorf("enable without a repository: exit %d, %q; want 2 and the hint", code, errs)
	}
	local := filepath.Join(dir, "var/lib/rancher/conf/cloud-config.yml")
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(local, []byte("rancher:\n  repositories:\n    mine:\n      url: "+srv.URL+"/repo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Listed from the repository's index before it is fetched; console,
	// built in, is not listed twice.
	out, errs, _ := runCLI(t, "--root", dir, "service", "list")
	if got := serviceLine(out, "node-exporter"); got != "node-exporter - false in repository mine 0 -" || strings.Count(out, "\nconsole ") != 1 || errs != "" {
		t.Errorf("service list: %q, want node-exporter in repository mine, console once, no error (%q)\n%s", got, errs, out)
	}
	out, errs, code := runCLI(t, "--root", dir, "service", "enable", "node-exporter")
	if want := "fetched node-exporter from " + srv.URL + "/repo/n/node-exporter.yml: 1 services\n"; code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("enable node-exporter: exit %d: %q %q; want %q first", code, out, errs, want)
	}
	out, _, _ = runCLI(t, "--root", dir, "service", "list")
	if got := serviceLine(out, "node-exporter"); !strings.HasPrefix(got, "node-exporter system-docker true") || strings.Count(out, "node-exporter") != 1 {
		t.Errorf("service list: %q, want node-exporter enabled, once\n%s", got, out)
	}
	if _, errs, code := runCLI(t, "--root", dir, "service", "enable", "missing"); code != 1 || !strings.Contains(errs, srv.URL+"/repo/m/missing.yml") {
		t.Errorf("enable missing: exit %d, %q; want exit 1 naming the URL tried", code, errs)
	}
	if b, _ := os.ReadFile(local); strings.Contains(string(b), "missing") {
		t.Errorf("a name no repository has is in the local config:\n%s", b)
	}
}

func TestTLSGen(t *testing.T) {
	dir := t.TempDir()
	out, errs, code := runCLI(t, "--root", dir, "tls", "gen", "-s", "-H", "192.0.2.7")
	if code != 0 {
		t.Fatalf("tls gen -s: exit %d: %s", code, errs)
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, "etc/docker/tls", f)); err != nil {
			t.Errorf("tls gen -s did not write %s (output %q)", f, out)
		}
	}
	// Kept on the state disk for the next boot, byte for byte.
	for _, f := range []string{"ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem"} {
		want, _ := os.ReadFile(filepath.Join(dir, "etc/docker/tls", f))
		got, err := os.ReadFile(filepath.Join(dir, "var/lib/rancher/conf/docker-tls", f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("tls gen -s: /var/lib/rancher/conf/docker-tls/%s is not /etc/docker/tls's: %v", f, err)
		}
	}
	client := filepath.Join(dir, "client")
	if _, errs, code := runCLI(t, "--root", dir, "tls", "gen", "-d", client); code != 0 {
		t.Fatalf("tls gen -d: exit %d: %s", code, errs)
	}
	for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
		if _, err := os.Stat(filepath.Join(client, f)); err != nil {
			t.Errorf("tls gen (client) did not write %s", f)
		}
	}
}
