package gce

import (
	"context"
	"errors"
	"flag"
	"net/http"
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

const userData = "#cloud-config\nhostname: from-gce\n"

func newFake() *fake.GCE {
	m := fake.GCEMeta()
	m["instance/attributes/user-data"] = userData
	return &fake.GCE{Meta: m}
}

func TestFetch(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(*fake.GCE)
		timeout  time.Duration
		wantErr  error
		wantUD   string
		wantKeys int
	}{
		{name: "happy path", setup: func(*fake.GCE) {}, wantUD: userData, wantKeys: 2},
		{name: "startup-script fallback", setup: func(g *fake.GCE) {
			delete(g.Meta, "instance/attributes/user-data")
			g.Meta["instance/attributes/startup-script"] = "#!/bin/sh\necho hi\n"
		}, wantUD: "#!/bin/sh\necho hi\n", wantKeys: 2},
		{name: "block-project-ssh-keys", setup: func(g *fake.GCE) {
			g.Meta["instance/attributes/block-project-ssh-keys"] = "TRUE"
		}, wantUD: userData, wantKeys: 1},
		{name: "500 then success", setup: func(g *fake.GCE) { g.SetFaults(fake.Faults{Fail5xx: 2}) }, wantUD: userData, wantKeys: 2},
		{name: "absent", setup: func(g *fake.GCE) { g.Meta = nil }, wantErr: source.ErrNotFound},
		{name: "hang until the deadline", setup: func(g *fake.GCE) { g.SetFaults(fake.Faults{Hang: true}) },
			timeout: 300 * time.Millisecond, wantErr: source.ErrTimeout},
		{name: "truncated answer", setup: func(g *fake.GCE) {
			g.SetFaults(fake.Faults{Truncate: true, Paths: []string{"/computeMetadata/v1/instance/attributes/user-data"}})
		}, timeout: 400 * time.Millisecond, wantErr: source.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newFake()
			tt.setup(g)
			srv := httptest.NewServer(g)
			defer srv.Close()
			to := tt.timeout
			if to == 0 {
				to = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), to)
			defer cancel()
			start := time.Now()
			r, err := New(WithEndpoint(srv.URL)).Fetch(ctx)
			if took := time.Since(start); took > to+500*time.Millisecond {
				t.Errorf("Fetch took %s with a %s deadline", took, to)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch = %v", err)
			}
			if string(r.UserData) != tt.wantUD {
				t.Errorf("UserData = %q, want %q", r.UserData, tt.wantUD)
			}
			if len(r.Meta.SSHPublicKeys) != tt.wantKeys || r.Meta.Hostname == "" || r.Meta.InstanceID == "" {
				t.Errorf("Meta = %+v, want %d keys, hostname, id", r.Meta, tt.wantKeys)
			}
		})
	}
}

func TestFakeRejectsRequestsWithoutFlavorHeader(t *testing.T) {
	srv := httptest.NewServer(newFake())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/computeMetadata/v1/instance/id")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET without Metadata-Flavor = %d, want 403", resp.StatusCode)
	}
}

func TestRefusedIsAbsentAtOnce(t *testing.T) {
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

func TestHostFromEnvironment(t *testing.T) {
	srv := httptest.NewServer(newFake())
	defer srv.Close()
	t.Setenv(HostEnv, strings.TrimPrefix(srv.URL, "http://"))
	r, err := New().Fetch(context.Background())
	if err != nil || string(r.UserData) != userData {
		t.Fatalf("Fetch via $%s = %v, %v", HostEnv, r, err)
	}
}

func TestParseGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) == 0 {
		t.Fatal("no testdata/*.json")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var v Values
			if err := yaml.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			ud, m := Parse(v)
			got, _ := yaml.Marshal(map[string]any{"user_data": string(ud), "meta": m})
			g := strings.TrimSuffix(f, ".json") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(g, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(g)
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
	f.Add("alice:ssh-ed25519 AAAA alice\nbad line\n:nouser", "bob:ssh-rsa AAAA bob", "projects/1/zones/us-central1-a", "false")
	f.Fuzz(func(t *testing.T, ik, pk, zone, block string) {
		_, m := Parse(Values{"instance/id": "1", "instance/attributes/ssh-keys": ik,
			"project/attributes/ssh-keys": pk, "instance/zone": zone, "instance/attributes/block-project-ssh-keys": block})
		for _, k := range m.SSHPublicKeys {
			if k == "" {
				t.Errorf("empty key from %q %q", ik, pk)
			}
		}
	})
}
