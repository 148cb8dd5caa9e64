package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthos/berth/datasources/source"
)

func TestFetch(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "ud.yml"), []byte("#cloud-config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New("/ud.yml", WithRoot(root)).Fetch(context.Background())
	if err != nil || string(r.UserData) != "#cloud-config\n" {
		t.Fatalf("Fetch = %v, %v", r, err)
	}
	if _, err := New("/nope", WithRoot(root)).Fetch(context.Background()); !errors.Is(err, source.ErrNotFound) {
		t.Errorf("Fetch of a missing file = %v, want ErrNotFound", err)
	}
}
