package sysinit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthos/berth/cloudinit"
)

func TestRepositoryIndex(t *testing.T) {
	indexes := map[string]string{
		"/one/index.yml":    "services:\n- kernel-headers\n- zfs\n- ../escape\nconsoles:\n- alpine\nengines:\n- docker-17.03.1-ce\n",
		"/two/index.yml":    "services: [zfs, crontab]\n",
		"/broken/index.yml": "services: {zfs: true}\n",
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := indexes[r.URL.Path]; ok {
			_, _ = w.Write([]byte(f))
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	repos := map[string]cloudinit.Repository{
		"a": {URL: srv.URL + "/one/"}, "b": {URL: srv.URL + "/two"},
		"c": {URL: srv.URL + "/broken"}, "d": {URL: srv.URL + "/gone"}, "e": {},
	}
	got, errs := RepositoryIndex(context.Background(), repos, nil, 5*time.Second)
	want := []RepositoryService{{"crontab", "b"}, {"kernel-headers", "a"}, {"zfs", "a"}}
	if !slices.Equal(got, want) {
		t.Errorf("services %v; want %v (sorted, the first repository by name wins, no console, engine or ../ name)", got, want)
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	if len(msgs) != 2 || !strings.HasPrefix(msgs[0], "repository c: "+srv.URL+"/broken/index.yml: not a repository index") ||
		msgs[1] != "repository d: GET "+srv.URL+"/gone/index.yml: HTTP 404: datasource not found" {
		t.Errorf("errors %q; want c's broken index and d's 404, each naming the repository and URL", msgs)
	}
}

// TestRepositoryIndexHangs: a repository that never answers costs the
// limit, and the others are still listed.
func TestRepositoryIndexHangs(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow/index.yml" {
			<-hang
			return
		}
		_, _ = w.Write([]byte("services: [zfs]\n"))
	}))
	defer srv.Close()
	defer close(hang)
	repos := map[string]cloudinit.Repository{"fast": {URL: srv.URL + "/fast"}, "slow": {URL: srv.URL + "/slow"}}
	start := time.Now()
	got, errs := RepositoryIndex(context.Background(), repos, nil, 300*time.Millisecond)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; want about the 300ms limit", d)
	}
	if !slices.Equal(got, []RepositoryService{{"zfs", "fast"}}) || len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "repository slow: ") {
		t.Errorf("got %v, %v; want fast's zfs and an error for slow", got, errs)
	}
}
