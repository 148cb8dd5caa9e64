package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berthos/berth/datasources/configdrive"
)

func TestWriteDrive(t *testing.T) {
	dir := t.TempDir()
	ud := filepath.Join(dir, "ud.yml")
	if err := os.WriteFile(ud, []byte("#cloud-config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "cd.iso")
	if err := run([]string{"-drive", img, "-user-data", ud}); err != nil {
		t.Fatalf("fakemeta -drive = %v", err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	r, err := configdrive.Read(f, st.Size())
	if err != nil || string(r.UserData) != "#cloud-config\n" {
		t.Fatalf("Read(fakemeta's drive) = %v, %v", r, err)
	}
}

func TestUnknownKind(t *testing.T) {
	if err := run([]string{"-kind", "azure"}); err == nil {
		t.Error("fakemeta -kind azure = nil, want an error")
	}
}
