//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/pierrec/lz4/v4"

	"github.com/berthos/berth/bootstrap"
)

// TestImageCarriesXenDrivers checks the shipped artifacts for what a
// Xen-based EC2 instance (t2, m4 ...) needs, since qemu cannot present
// Xen's devices here (its Xen emulation needs KVM): the small initrd, which
// an installed disk boots, resolves the modalias of a Xen disk (xen:vbd,
// the xvda an AMI's root disk is) to a driver it carries, and the system
// image resolves the disk's and the NIC's (xen:vif).
func TestImageCarriesXenDrivers(t *testing.T) {
	img := image(t)
	small := filepath.Join(img.Dir, "initrd.small")
	files := initrdFiles(t, small, "modules.dep", "modules.alias", ".ko")
	kver := ""
	for name := range files {
		if strings.HasSuffix(name, "/modules.dep") {
			kver = strings.Split(strings.TrimPrefix(name, "lib/modules/"), "/")[0]
		}
	}
	if kver == "" {
		t.Fatalf("%s has no lib/modules/*/modules.dep", small)
	}
	dir := "lib/modules/" + kver
	md := moduleIndex(t, dir, files[dir+"/modules.dep"], files[dir+"/modules.alias"])
	if got := md.Resolve("xen:vbd"); len(got) != 1 || got[0] != "xen_blkfront" {
		t.Errorf("initrd.small resolves xen:vbd to %q, want [xen_blkfront]", got)
	}
	if f, _ := md.Order([]string{"xen_blkfront"}); len(f) != 1 || files[dir+"/"+f[0]] == nil {
		t.Errorf("initrd.small does not carry xen_blkfront (modules.dep gives %q)", f)
	}

	sqfs := filepath.Join(img.Dir, "system.sqfs")
	cat := func(name string) []byte {
		out, err := exec.Command("unsquashfs", "-cat", sqfs, dir+"/"+name).Output()
		if err != nil {
			t.Fatalf("unsquashfs -cat %s %s: %v", sqfs, name, err)
		}
		return out
	}
	sys := moduleIndex(t, dir, cat("modules.dep"), cat("modules.alias"))
	for alias, want := range map[string]string{"xen:vbd": "xen_blkfront", "xen:vif": "xen_netfront"} {
		if got := sys.Resolve(alias); len(got) != 1 || got[0] != want {
			t.Errorf("system.sqfs resolves %s to %q, want [%s]", alias, got, want)
		}
	}
}

// initrdFiles reads an LZ4 (legacy format) cpio initramfs and returns the regular files
// whose names end in one of suffixes, by name.
func initrdFiles(t *testing.T, path string, suffixes ...string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("no %s (make image): %v", path, err)
	}
	defer f.Close()
	zr := lz4.NewReader(f)
	files := map[string][]byte{}
	r := cpio.NewReader(zr)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, s := range suffixes {
			if h.Mode.IsRegular() && strings.HasSuffix(h.Name, s) {
				b, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("%s: %s: %v", path, h.Name, err)
				}
				files[strings.TrimPrefix(h.Name, "./")] = b
				break
			}
		}
	}
	return files
}

func moduleIndex(t *testing.T, dir string, dep, alias []byte) *bootstrap.ModuleDeps {
	t.Helper()
	md, err := bootstrap.ParseModulesDep(dir, bytes.NewReader(dep))
	if err != nil {
		t.Fatal(err)
	}
	if err := md.ParseAliases(bytes.NewReader(alias)); err != nil {
		t.Fatal(err)
	}
	return md
}
