package openstack

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

const userData = "#cloud-config\nhostname: from-openstack\n"

func TestFetch(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*fake.OpenStack)
		timeout time.Duration
		wantErr error
		errText string
		wantUD  string
	}{
		{name: "happy path", setup: func(*fake.OpenStack) {}, wantUD: userData},
		{name: "no user_data", setup: func(o *fake.OpenStack) { delete(o.Files, "user_data") }},
		{name: "absent", setup: func(o *fake.OpenStack) { o.Files = nil }, wantErr: source.ErrNotFound},
		{name: "500 then success", setup: func(o *fake.OpenStack) { o.SetFaults(fake.Faults{Fail5xx: 2}) }, wantUD: userData},
		{name: "hang until the deadline", setup: func(o *fake.OpenStack) { o.SetFaults(fake.Faults{Hang: true}) },
			timeout: 300 * time.Millisecond, wantErr: source.ErrTimeout},
		{name: "truncated JSON", setup: func(o *fake.OpenStack) {
			o.SetFaults(fake.Faults{Truncate: true, Paths: []string{"/openstack/latest/meta_data.json"}})
		}, timeout: 400 * time.Millisecond, wantErr: source.ErrTimeout},
		{name: "invalid JSON", setup: func(o *fake.OpenStack) { o.Files["meta_data.json"] = []byte(`{"uuid": `) },
			errText: "meta_data.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := &fake.OpenStack{Files: fake.OpenStackFiles([]byte(userData))}
			tt.setup(o)
			srv := httptest.NewServer(o)
			defer srv.Close()
			to := tt.timeout
			if to == 0 {
				to = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), to)
			defer cancel()
			r, err := New(WithEndpoint(srv.URL)).Fetch(ctx)
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
			if string(r.UserData) != tt.wantUD {
				t.Errorf("UserData = %q, want %q", r.UserData, tt.wantUD)
			}
			if r.Meta.Hostname != "berth-1.novalocal" || len(r.Meta.SSHPublicKeys) != 1 || r.Network == nil {
				t.Errorf("Meta = %+v, Network = %+v", r.Meta, r.Network)
			}
		})
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	srv := httptest.NewServer(&fake.OpenStack{Files: fake.OpenStackFiles([]byte(userData))})
	defer srv.Close()
	t.Setenv(EndpointEnv, srv.URL)
	r, err := New().Fetch(context.Background())
	if err != nil || string(r.UserData) != userData {
		t.Fatalf("Fetch via $%s = %v, %v", EndpointEnv, r, err)
	}
}

// golden runs parse over testdata/<prefix>*.json into .golden.yaml files.
func golden(t *testing.T, prefix string, parse func([]byte) (any, error)) {
	files, _ := filepath.Glob("testdata/" + prefix + "*.json")
	if len(files) == 0 {
		t.Fatalf("no testdata/%s*.json", prefix)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			v, err := parse(raw)
			if err != nil {
				v = map[string]string{"error": err.Error()}
			}
			got, _ := yaml.Marshal(v)
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
				t.Errorf("parse %s (-want +got):\n%s", f, diff)
			}
		})
	}
}

func TestParseNetworkDataGolden(t *testing.T) {
	golden(t, "network_", func(b []byte) (any, error) { return ParseNetworkData(b) })
}

func TestParseMetaDataGolden(t *testing.T) {
	golden(t, "meta_", func(b []byte) (any, error) {
		_, m, err := ParseMetaData(b)
		return m, err
	})
}

func FuzzParseNetworkData(f *testing.F) {
	f.Add([]byte(fake.OpenStackNetworkData))
	if b, err := os.ReadFile("testdata/network_bond_vlan.json"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseNetworkData(b)
	})
}

func FuzzParseMetaData(f *testing.F) {
	f.Add([]byte(fake.OpenStackMetaData))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseMetaData(b)
	})
}
