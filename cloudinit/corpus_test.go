package cloudinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusDir finds the RancherOS 1.x integration-test cloud-configs beside
// the repository (../shared in the workspace and in CI).
func corpusDir(t *testing.T) string {
	t.Helper()
	for _, d := range []string{
		"../../shared/conformance/rancheros-1.x/assets",
		"../../../shared/conformance/rancheros-1.x/assets",
	} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	t.Skip("compatibility corpus ../shared/conformance/rancheros-1.x/assets not found beside the repository")
	return ""
}

// TestCompatibilityCorpus: every cloud-config of RancherOS 1.x's own
// integration tests parses with no errors (warnings are allowed).
func TestCompatibilityCorpus(t *testing.T) {
	dir := corpusDir(t)
	var files []string
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && strings.HasSuffix(p, ".yml") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d corpus files in %s, want at least 20", len(files), dir)
	}
	for _, f := range files {
		name, _ := filepath.Rel(dir, f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, rep, err := Parse(name, data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if rep.HasErrors() {
				t.Errorf("Parse(%s) reported errors:\n%s", name, rep)
			}
			if len(rep.Entries) > 0 {
				t.Logf("warnings:\n%s", rep)
			}
		})
	}
}
