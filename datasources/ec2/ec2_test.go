package ec2

import (
	"context"
	"errors"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/berthos/berth/datasources/fake"
	"github.com/berthos/berth/datasources/source"
)

var update = flag.Bool("update", false, "rewrite golden files")

const userData = "#cloud-config\nhostname: from-user-data\n"

func serve(t *testing.T, e *fake.EC2) string {
	t.Helper()
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv.URL
}

func newFake() *fake.EC2 {
	return &fake.EC2{UserData: []byte(userData), Meta: fake.EC2Meta()}
}

func TestFetch(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(*fake.EC2)
		opts     []Option
		timeout  time.Duration
		wantErr  error  // sentinel, nil for success
		errText  string // substring of a non-sentinel error
		wantUD   string
		minToken int
	}{
		{name: "IMDSv2 happy path", setup: func(e *fake.EC2) { e.RequireToken = true }, wantUD: userData, minToken: 1},
		{name: "no user-data is not an error", setup: func(e *fake.EC2) { e.UserData = nil }, wantUD: ""},
		{name: "IMDSv1 fallback when tokens are not served", setup: func(e *fake.EC2) { e.NoTokens = true }, wantUD: userData},
		{name: "IMDSv1 forbidden", setup: func(e *fake.EC2) { e.NoTokens = true }, opts: []Option{WithIMDSv1(false)}, errText: "ec2"},
		{name: "500s then success", setup: func(e *fake.EC2) { e.SetFaults(fake.Faults{Fail5xx: 3}) }, wantUD: userData},
		{name: "token expires mid-fetch", setup: func(e *fake.EC2) { e.RequireToken = true; e.TokenUses = 4 }, wantUD: userData, minToken: 2},
		{name: "hang until the deadline", setup: func(e *fake.EC2) { e.SetFaults(fake.Faults{Hang: true}) }, timeout: 300 * time.Millisecond, wantErr: source.ErrTimeout},
		{name: "truncated user-data", setup: func(e *fake.EC2) {
			e.SetFaults(fake.Faults{Truncate: true, Paths: []string{"/latest/user-data"}})
		}, timeout: 500 * time.Millisecond, errText: "user-data"},
		{name: "no instance-id means absent", setup: func(e *fake.EC2) { delete(e.Meta, "instance-id") }, wantErr: source.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFake()
			tt.setup(e)
			s := New(append([]Option{WithEndpoint(serve(t, e))}, tt.opts...)...)
			to := tt.timeout
			if to == 0 {
				to = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), to)
			defer cancel()
			start := time.Now()
			r, err := s.Fetch(ctx)
			took := time.Since(start)
			if took > to+time.Second {
				t.Errorf("Fetch took %s with a %s deadline", took, to)
			}
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch = %v, want %v", err, tt.wantErr)
				}
				return
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Fetch = %v, want an error about %s", err, tt.errText)
				}
				return
			case err != nil:
				t.Fatalf("Fetch = %v", err)
			}
			if got := string(r.UserData); got != tt.wantUD {
				t.Errorf("UserData = %q, want %q", got, tt.wantUD)
			}
			if r.Meta.InstanceID != "i-0123456789abcdef0" || r.Meta.Hostname == "" || len(r.Meta.SSHPublicKeys) != 1 {
				t.Errorf("Meta = %+v, want instance-id, hostname and one key", r.Meta)
			}
			if r.Network == nil || len(r.Network.Interfaces) != 1 {
				t.Errorf("Network = %+v, want one interface", r.Network)
			}
			if n := e.TokensIssued(); n < tt.minToken {
				t.Errorf("tokens issued = %d, want at least %d", n, tt.minToken)
			}
		})
	}
}

func TestFetchRefusedIsAbsentAtOnce(t *testing.T) {
	srv := httptest.NewServer(newFake())
	u := srv.URL
	srv.Close()
	start := time.Now()
	_, err := New(WithEndpoint(u)).Fetch(context.Background())
	if !errors.Is(err, source.ErrNotFound) {
		t.Fatalf("Fetch from a closed port = %v, want ErrNotFound", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Fetch from a closed port took %s, want under 100ms", took)
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	e := newFake()
	t.Setenv(EndpointEnv, serve(t, e))
	r, err := New().Fetch(context.Background())
	if err != nil || string(r.UserData) != userData {
		t.Fatalf("Fetch via $%s = %v, %v", EndpointEnv, r, err)
	}
}

// TestParseGolden: testdata/<case>.json (a Tree) -> <case>.golden.yaml.
func TestParseGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) == 0 {
		t.Fatal("no testdata/*.json")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var tr Tree
			if err := yaml.Unmarshal(raw, &tr); err != nil {
				t.Fatal(err)
			}
			m, n, err := Parse(tr)
			out := map[string]any{"meta": m, "network": n}
			if err != nil {
				out = map[string]any{"error": err.Error()}
			}
			got, _ := yaml.Marshal(out)
			golden := strings.TrimSuffix(f, ".json") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("Parse(%s) (-want +got):\n%s", f, diff)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add("i-1", "0=k", "ssh-ed25519 AAAA k", "02:00:00:00:00:01/", "192.0.2.1\n192.0.2.2", "192.0.2.0/24", "2001:db8::1", "2001:db8::/64")
	f.Fuzz(func(t *testing.T, id, keys, key, macs, v4s, v4net, v6s, v6net string) {
		tr := Tree{"instance-id": id, "public-keys/": keys, "public-keys/0/openssh-key": key, "network/interfaces/macs/": macs}
		for _, m := range lines(macs) {
			p := "network/interfaces/macs/" + strings.TrimSuffix(m, "/") + "/"
			tr[p+"local-ipv4s"], tr[p+"subnet-ipv4-cidr-block"], tr[p+"ipv6s"], tr[p+"subnet-ipv6-cidr-blocks"] = v4s, v4net, v6s, v6net
		}
		m, n, err := Parse(tr)
		if err == nil && m.InstanceID == "" {
			t.Errorf("Parse accepted metadata without an instance-id")
		}
		_ = n
	})
}
