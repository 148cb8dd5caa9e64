package cmdline

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/berthos/berth/datasources/source"
)

const cc = "#cloud-config\nhostname: from-cmdline\n"

func TestParse(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte(cc))
	tests := []struct {
		cmdline string
		url     string
		data    string
		wantErr bool
	}{
		{"console=ttyS0 cloud-config-url=http://192.0.2.1/cc.yml", "http://192.0.2.1/cc.yml", "", false},
		{"cloud-config=" + b64, "", cc, false},
		{"cloud-config=" + base64.RawURLEncoding.EncodeToString([]byte(cc)), "", cc, false},
		{"cloud-config=" + url.QueryEscape(cc), "", cc, false},
		{`quiet "cloud-config=` + url.PathEscape(cc) + `"`, "", cc, false},
		{"cloud-config-url=http://a/1 cloud-config-url=http://192.0.2.2/2", "http://192.0.2.2/2", "", false},
		{"cloud-config-url=ftp://192.0.2.1/x", "", "", true},
		{"cloud-config=aGVsbG8=", "", "", true}, // base64 of "hello": not a cloud-config
		{"rancher.debug=true cc.hostname=x", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.cmdline, func(t *testing.T) {
			u, data, err := Parse(tt.cmdline)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse(%q) error = %v, want error %v", tt.cmdline, err, tt.wantErr)
			}
			if u != tt.url || string(data) != tt.data {
				t.Errorf("Parse(%q) = %q, %q, want %q, %q", tt.cmdline, u, data, tt.url, tt.data)
			}
		})
	}
}

func TestFields(t *testing.T) {
	got := Fields(`a  b="c d" "e f"` + "\n")
	if diff := cmp.Diff([]string{"a", "b=c d", "e f"}, got); diff != "" {
		t.Errorf("Fields (-want +got):\n%s", diff)
	}
}

func TestFetch(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cc.yml" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(cc))
	}))
	defer srv.Close()
	tests := []struct {
		cmdline string
		want    string
		wantErr error
	}{
		{"console=ttyS0 cloud-config-url=" + srv.URL + "/cc.yml", cc, nil},
		{"cloud-config-url=" + srv.URL + "/missing", "", source.ErrNotFound},
		{"cloud-config=" + base64.StdEncoding.EncodeToString([]byte(cc)), cc, nil},
		{"console=ttyS0", "", source.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.cmdline, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte(tt.cmdline+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := New(WithRoot(root)).Fetch(context.Background())
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(r.UserData) != tt.want {
				t.Fatalf("Fetch = %v, %v, want %q", r, err, tt.want)
			}
		})
	}
}
