package url

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/berthos/berth/datasources/source"
)

func TestFetch(t *testing.T) {
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky":
			if fails > 0 {
				fails--
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("#cloud-config\n"))
		case "/forbidden":
			http.Error(w, "no", http.StatusForbidden)
		case "/hang":
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tests := []struct {
		path    string
		wantErr error
		errText string
	}{
		{path: "/flaky"},
		{path: "/missing", wantErr: source.ErrNotFound},
		{path: "/forbidden", errText: "403"},
		{path: "/hang", wantErr: source.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if tt.path == "/hang" {
				ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
			}
			r, err := New(srv.URL + tt.path).Fetch(ctx)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Fetch = %v, want %v", err, tt.wantErr)
				}
			case tt.errText != "":
				if err == nil || errors.Is(err, source.ErrNotFound) {
					t.Fatalf("Fetch = %v, want a %s error", err, tt.errText)
				}
			case err != nil:
				t.Fatalf("Fetch = %v", err)
			case string(r.UserData) != "#cloud-config\n":
				t.Errorf("UserData = %q", r.UserData)
			}
		})
	}
}
