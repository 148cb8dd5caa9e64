package bootstrap

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFindSystemImageSaysWhatItLookedAt: with no medium carrying the
// system image, the search ends after its wait with an error that names
// the file it looked for and the devices it tried (what the emergency
// shell shows), instead of hanging the boot. Finding it on a real ISO is
// the e2e TestSmallMachineFromISO: this host's kernel has neither ISO
// 9660 nor FAT.
func TestFindSystemImageSaysWhatItLookedAt(t *testing.T) {
	dir := t.TempDir()
	devs := []string{filepath.Join(dir, "no-such-cdrom")}
	start := time.Now()
	_, err := FindSystemImage(NewLogger(io.Discard), filepath.Join(dir, "media"), 300*time.Millisecond, func() []string { return devs })
	if err == nil || !strings.Contains(err.Error(), "/berth/system.sqfs") || !strings.Contains(err.Error(), devs[0]) {
		t.Fatalf("FindSystemImage = %v, want an error naming /berth/system.sqfs and %s", err, devs[0])
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("the search took %s, want its 300 ms wait", took)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "media")); len(ents) != 0 {
		t.Errorf("the search left %d mount points behind", len(ents))
	}
}
